"""prefect_stablestudio."""
