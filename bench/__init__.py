"""Benchmarks and soak tests (not part of CI). Run `python -m bench` (see README)."""
