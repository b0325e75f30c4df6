"""Helpers for the Prefect-layer tests: saved wallets pointing at a simulator, input images, ledger reads."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from PIL import Image

from prefect_stablestudio.blocks import StableStudioWallet

EDIT_ROUTE = "flux-2-pro/edit"
UPLOAD_ROUTE = "upload"


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 24) -> bytes:
    """A small real PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def payments(sim: Any, address: str, route: str | None = None) -> list[dict[str, Any]]:
    """The simulator's settled payments of one wallet (optionally one route)."""
    return [
        p
        for p in sim.state()["ledger"]["payments"]
        if p["payer"].lower() == address.lower() and (route is None or p["route"] == route)
    ]


SavedWallet = tuple[str, StableStudioWallet, str]


@pytest.fixture
def make_wallet(prefect_api: str) -> Callable[..., Any]:
    """Factory (async): save a wallet for a fresh key against `sim`; returns (block name, block, key hex)."""

    async def factory(sim: Any, **fields: Any) -> SavedWallet:
        account = Account.create()
        key = "0x" + bytes(account.key).hex()
        wallet = StableStudioWallet(
            private_key=key, base_url=sim.base_url, blob_api_url=sim.blob_api_url, **fields
        )
        name = f"wallet-{uuid.uuid4().hex[:12]}"
        await wallet.save(name, overwrite=True)
        return name, wallet, key

    return factory
