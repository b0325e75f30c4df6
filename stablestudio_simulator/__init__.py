"""stablestudio_simulator."""
