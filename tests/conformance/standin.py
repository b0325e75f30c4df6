"""The router stand-in (tests/conformance/router-standin/, the unmodified @agentcash/router) as the tests see
it: where it runs, how its Node dependencies are installed, and a uniform view of either server under test."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from PIL import Image

STANDIN_DIR = Path(__file__).parent / "router-standin"
STANDIN_PORT = 80
STARTUP_LINE = "router stand-in listening on"


@dataclass(frozen=True)
class RouterStandin:
    """The running stand-in: the URLs a client needs, and what moved on its in-memory chain."""

    base_url: str
    pay_to: str = "0x919c2692DC6B80c70D2A3829896aC1EE59c55Acb"

    @property
    def blob_api_url(self) -> str:
        """Its Vercel Blob stand-in."""
        return f"{self.base_url}/api/blob"

    def chain(self) -> dict[str, Any]:
        """Transfers, used EIP-3009 nonces and balances on the stand-in's chain."""
        data: dict[str, Any] = httpx.get(f"{self.base_url}/_standin/chain").json()
        return data

    def transfers_from(self, address: str) -> list[int]:
        """Atomic amounts ``address`` paid, in order."""
        return [int(t["value"]) for t in self.chain()["transfers"] if t["from"].lower() == address.lower()]

    def set_edit_price(self, usd: str | None) -> None:
        """Make the edit route's price function answer ``usd`` (None: the price by resolution again)."""
        httpx.put(f"{self.base_url}/_standin/edit-price", json={"price": usd}).raise_for_status()


def install_node_dependencies() -> None:
    """``npm ci`` from the lock file (CI's clean clone); a no-op when node_modules is there."""
    if (STANDIN_DIR / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the conformance suite needs node 20 and npm on PATH")
    # .npmrc sets legacy-peer-deps (viem declares an optional peer mppx>=0.17 that does not exist).
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=STANDIN_DIR, check=True)


@dataclass(frozen=True)
class Server:
    """The simulator or the router stand-in, as the tests that run against both see them."""

    name: str
    base_url: str
    blob_api_url: str
    paid_by: Callable[[str], list[int]]  # atomic amounts a wallet paid, in order
    nonces_of: Callable[[str], set[str]]  # the EIP-3009 nonces (lower-case hex) of its settled payments


def png(size: tuple[int, int] = (32, 24)) -> bytes:
    """A small real PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, "teal").save(buf, "PNG")
    return buf.getvalue()


def new_key() -> tuple[str, str]:
    """A fresh wallet: (key hex, address)."""
    account = Account.create()
    return "0x" + bytes(account.key).hex(), account.address
