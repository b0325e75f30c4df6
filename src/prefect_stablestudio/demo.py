"""`prefect-stablestudio demo`: the real `edit_images` flow on embedded defaults, no money involved.

Embedded defaults: the StableStudio simulator in a background thread of this process (jobs take a few
seconds, like the real service, only shorter), a throwaway wallet funded there with test USDC, Prefect's
local API (ephemeral unless PREFECT_API_URL points at a server) and sample images drawn on the spot.

Example:
    ```bash
    prefect-stablestudio demo --out ./out/demo
    ```
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from rich.panel import Panel

from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.console import console

__all__ = ["DEMO_FUNDING_USDC", "DEMO_PROMPT", "DEMO_WALLET_BLOCK", "DemoSettings", "run_demo"]

DEMO_WALLET_BLOCK = "stablestudio-demo"
DEMO_PROMPT = "Turn this into a soft watercolor painting at golden hour"
DEMO_FUNDING_USDC = Decimal("5")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo can be told from the command line."""

    out: Path
    prompt: str = DEMO_PROMPT
    latency_seconds: float = 3.0
    verbose: bool = False


def _ui_url() -> tuple[str, bool]:
    """The UI's base URL and whether a server is already serving it (False: ephemeral mode)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if PREFECT_API_URL.value():
        return str(PREFECT_UI_URL.value() or PREFECT_API_URL.value()).removesuffix("/api"), True
    return "http://127.0.0.1:4200", False


async def run_demo(settings: DemoSettings) -> int:
    """Run the demo; return the exit status (0 when every sample was edited)."""
    from eth_account import Account

    from prefect_stablestudio.samples import write_sample_images
    from prefect_stablestudio.simulator import SimulatorSettings, run_simulator_in_thread

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.console import quiet_prefect_console
    from prefect_stablestudio.editing import outcome_table, run_edits
    from prefect_stablestudio.flows.models import EditOptions
    from prefect_stablestudio.quoting import quote_images, quote_table

    quiet_prefect_console(logging.NOTSET if settings.verbose else logging.WARNING)
    ui_url, has_server = _ui_url()
    console.print(
        Panel.fit(
            "[bold]prefect-stablestudio demo[/]: Flux 2 Pro image edits paid per call in USDC, "
            "run by Prefect.\nIt runs against the [bold]local StableStudio simulator[/] with a throwaway "
            "wallet: no real money moves.",
            border_style="cyan",
        )
    )
    account = Account.create()  # its key lives only in this process and in the local block below
    sim_settings = SimulatorSettings(
        latency_seconds=settings.latency_seconds,
        funded={account.address: DEMO_FUNDING_USDC},
        default_balance=0,
    )
    inputs = write_sample_images(settings.out / "inputs")
    results = settings.out / "results"
    console.print(f"Sample images: {len(inputs)} drawn into [bold]{settings.out / 'inputs'}[/]")
    with run_simulator_in_thread(sim_settings) as sim:
        console.print(f"Simulator: {sim.base_url} (jobs take ~{settings.latency_seconds:g} s)")
        console.print(
            f"Wallet: {account.address}, funded with {DEMO_FUNDING_USDC} test USDC on the simulator"
        )
        wallet = StableStudioWallet(
            private_key="0x" + bytes(account.key).hex(),
            base_url=sim.base_url,
            blob_api_url=sim.blob_api_url,
            base_rpc_url=f"{sim.base_url}/_sim/rpc/base",  # the pre-flight reads the balance there
            max_usd_per_call=Decimal("0.50"),
            max_usd_per_run=Decimal("1.00"),
            max_usd_total=Decimal("2.00"),
        )
        where = (
            "your Prefect server"
            if has_server
            else ("Prefect's local API (ephemeral; the first run migrates its database, ~20 s)")
        )
        with console.status(f"Connecting to {where}..."):
            await wallet.save(DEMO_WALLET_BLOCK, overwrite=True)
        console.print(f"Wallet block: [bold]{DEMO_WALLET_BLOCK}[/] saved (key encrypted, never printed)")
        console.print(f"Prompt: [italic]{settings.prompt}[/]")
        options = EditOptions(resolution="1 MP", output_format="png")
        images = [str(p) for p in inputs]
        quote, report = await quote_images(DEMO_WALLET_BLOCK, images, settings.prompt, options)
        console.print("Before paying, the quote (free 402s) and the pre-flight (caps, balance):")
        console.print(quote_table(quote))
        for line in report.lines():
            console.print(f"  {line}")
        run = await run_edits(
            DEMO_WALLET_BLOCK, images, settings.prompt, str(results), options, max_concurrency=3,
        )
        state = sim.state()
        balance = dollars_from_atomic(sim.balance(account.address))
    paid = [p for p in state["ledger"]["payments"] if p["payer"].lower() == account.address.lower()]
    total = dollars_from_atomic(sum(p["amount"] for p in paid))

    console.print(outcome_table(run.result))
    ok = len(run.result.succeeded)
    run_url = f"{ui_url}/runs/flow-run/{run.flow_run_id}"
    see = f"open {run_url}" if has_server else f"run [bold]prefect server start[/], then open {run_url}"
    lines = [
        f"[bold]{ok} of {len(run.result.outcomes)} edits saved[/] in {results}",
        f"Flow run {run.flow_run_id}: its artifacts (table, before/after summary, progress) "
        f"are in Prefect: {see}",
        f"Spend: ${run.result.spent_usd} this run; the simulator's ledger shows {len(paid)} payments "
        f"totalling ${total} ({len(inputs)} uploads at $0.01 and {ok} edits), balance left ${balance}.",
        f"Caps: prefect-stablestudio budget {DEMO_WALLET_BLOCK}",
    ]
    console.print(
        Panel(
            "\n".join(lines),
            title="Results",
            border_style="green" if ok == len(inputs) else "red",
        )
    )
    console.print(
        "This demo ran against the [bold]local simulator[/]. To edit for real on https://stablestudio.dev, "
        "fund a dedicated hot wallet with a few USDC on Base, then:\n"
        "  prefect-stablestudio wallet create my-wallet --max-total 5   "
        "[dim](reads STABLESTUDIO_PRIVATE_KEY or asks, hidden)[/]\n"
        '  prefect-stablestudio edit photo.png --prompt "..." --wallet my-wallet'
    )
    return 0 if ok == len(inputs) else 1
