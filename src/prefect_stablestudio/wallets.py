"""`wallet create`, `wallet show` and `budget`: the wallet block and its spend, as a shell user sees them.

Spend is read from Prefect's global concurrency limits (`prefect_stablestudio.blocks.budget`), where the caps
are enforced; a cap that is not set has no limit and so no count.

Example:
    ```python
    from prefect_stablestudio.wallets import load_report

    report = await load_report("my-wallet")
    print(report.address, report.rows)
    ```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect_stablestudio.client.money import usd_from_atomic
from prefect_stablestudio.console import CliError

if TYPE_CHECKING:
    from prefect_stablestudio.blocks import StableStudioWallet

__all__ = ["CapRow", "WalletReport", "create_wallet", "load_report", "load_wallet_or_explain"]

KEY_ENV = "STABLESTUDIO_PRIVATE_KEY"


@dataclass(frozen=True)
class CapRow:
    """One cap: its limit and what has been spent under it (atomic units; None where there is no cap)."""

    name: str
    limit: int | None
    spent: int | None
    remaining: int | None


@dataclass
class WalletReport:
    """What `wallet show` and `budget` print. Never the key."""

    name: str
    address: str
    base_url: str
    blob_api_url: str | None
    allowed_networks: list[str]
    allowed_pay_to: list[str] | None
    rows: list[CapRow] = field(default_factory=list)
    active_runs: list[tuple[str, int, int]] = field(default_factory=list)
    balances: list[tuple[str, str]] = field(default_factory=list)
    """(network, balance for people): "$12.5", "not checked (no RPC URL)" or why it could not be read."""


async def load_wallet_or_explain(name: str) -> StableStudioWallet:
    """Load the block or raise `CliError` saying how to create it."""
    from prefect_stablestudio.blocks import StableStudioWallet

    try:
        return await StableStudioWallet.aload(name)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise CliError(
            f"no StableStudio wallet block named {name!r}. "
            f"Create one with: prefect-stablestudio wallet create {name}"
        ) from None


async def create_wallet(
    name: str,
    private_key: str,
    *,
    overwrite: bool,
    fields: dict[str, Any],
) -> StableStudioWallet:
    """Validate and save a wallet block, then create the limits behind its caps.

    With another `base_url` than StableStudio's and no `blob_api_url`, the blob API that origin advertises
    (the simulator does, at `/_sim/info`) is saved as the wallet's `blob_api_url`.

    Raises:
        CliError: a block of that name exists and `overwrite` is False.
        pydantic.ValidationError: a field is invalid (the message never quotes the key).
    """
    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.client.blob_api import advertised_blob_api
    from prefect_stablestudio.client.studio import DEFAULT_BASE_URL

    base_url = str(fields.get("base_url") or DEFAULT_BASE_URL)
    if not fields.get("blob_api_url") and base_url.rstrip("/") != DEFAULT_BASE_URL:
        # A simulator says where its blob API is: without it, uploads would pay for tickets sent to Vercel.
        fields = {**fields, "blob_api_url": await advertised_blob_api(base_url)}
    wallet = StableStudioWallet(private_key=private_key, **fields)
    if not overwrite:
        try:
            await StableStudioWallet.aload(name)
        except ValueError:
            pass
        else:
            raise CliError(f"a wallet block named {name!r} exists; pass --overwrite to replace it")
    await wallet.save(name, overwrite=True)
    await wallet.ensure_budget_limits()
    return wallet


async def load_report(name: str) -> WalletReport:
    """The wallet's public settings, each cap with its spend, and the per-run limits of runs in flight."""
    from prefect.client.orchestration import get_client

    from prefect_stablestudio.blocks.budget import run_limit_name

    wallet = await load_wallet_or_explain(name)
    caps = wallet.caps()
    remaining = await wallet.budget().remaining()
    report = WalletReport(
        name=name,
        address=wallet.public_address,
        base_url=wallet.base_url,
        blob_api_url=wallet.blob_api_url,
        allowed_networks=list(wallet.allowed_networks),
        allowed_pay_to=wallet.allowed_pay_to,
        balances=await _balances(wallet),
    )
    for cap_name, limit in caps.items():
        if cap_name == "per call" or cap_name == "per flow run" or limit is None:
            report.rows.append(CapRow(cap_name, limit, None, None))
            continue
        left = remaining.get(cap_name, limit)
        report.rows.append(CapRow(cap_name, limit, limit - left, left))
    prefix = run_limit_name(wallet.public_address, "")
    async with get_client() as client:
        offset = 0
        while True:
            batch = await client.read_global_concurrency_limits(limit=200, offset=offset)
            for gcl in batch:
                if gcl.name.startswith(prefix):
                    report.active_runs.append((gcl.name[len(prefix) :], gcl.limit, gcl.active_slots))
            if len(batch) < 200:
                break
            offset += 200
    return report


async def _balances(wallet: StableStudioWallet) -> list[tuple[str, str]]:
    from prefect_stablestudio.client.errors import RpcError

    try:
        found = await wallet.balances()
    except RpcError as exc:
        return [("RPC", f"unreadable: {exc}")]
    return [
        (b.network, "not checked (no RPC URL)" if b.amount is None else usd_from_atomic(b.amount))
        for b in found
    ]

