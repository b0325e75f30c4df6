"""Helpers shared by the test packages: plain functions and classes, imported by name.

Fixtures live in `tests/fixtures/` (pytest plugins, loaded by tests/conftest.py) and in each package's
conftest.py; nothing is imported from a conftest.
"""
