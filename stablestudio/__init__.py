"""stablestudio."""
