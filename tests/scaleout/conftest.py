"""The scale-out tests reuse the Prefect layer's helpers (saved wallets against a simulator)."""

from tests.prefect.conftest import make_wallet

__all__ = ["make_wallet"]
