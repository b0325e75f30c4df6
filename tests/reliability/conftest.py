"""The reliability suite reuses the protocol tests' loopback server fixtures (imported, not copied)."""

from tests.core.conftest import key, serve_app

__all__ = ["key", "serve_app"]
