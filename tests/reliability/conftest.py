"""The reliability suite reuses fixtures of the other suites (imported, not copied): the protocol tests'
loopback server and the Prefect tests' saved-wallet factory."""

from tests.core.conftest import key, serve_app
from tests.prefect.conftest import make_wallet

__all__ = ["key", "make_wallet", "serve_app"]
