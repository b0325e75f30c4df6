"""The `prefect-stablestudio` command line.

Commands import what they need when they run, so `--help` answers without starting anything. Exit status: 0
on success, 1 when the work failed (a refused payment, a missing block, an edit that did not produce a
result), 2 for a usage error.

Example:
    ```bash
    prefect-stablestudio demo
    prefect-stablestudio wallet create my-wallet --max-total 5   # key: $STABLESTUDIO_PRIVATE_KEY or a prompt
    prefect-stablestudio edit photo.png --prompt "make it snow" --wallet my-wallet
    prefect-stablestudio budget my-wallet
    prefect-stablestudio spend --wallet my-wallet --since 2026-12-01 --csv spend.csv
    ```
"""

from __future__ import annotations

import logging
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefect_stablestudio.console import console, err_console, run

if TYPE_CHECKING:
    from prefect_stablestudio.flows.models import EditOptions
    from prefect_stablestudio.wallets import WalletReport

app = typer.Typer(
    name="prefect-stablestudio",
    help="Edit images with Flux 2 Pro on StableStudio from Prefect, paid per call in USDC (x402). "
    "No API keys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
wallet_app = typer.Typer(
    help="Save and inspect StableStudio wallet blocks (the key is never shown).",
    no_args_is_help=True,
)
app.add_typer(wallet_app, name="wallet")

KEY_ENV = "STABLESTUDIO_PRIVATE_KEY"
_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

# The arguments of an edit, declared once for `edit` and `quote`. Their values are checked by `EditOptions`
# (flows/models.py, which takes the Flux 2 Pro bounds from client/models.py), not here.
ImagesArgument = Annotated[
    list[str], typer.Argument(metavar="IMAGE...", help="Images to edit: local paths or fsspec URLs (s3://...).")
]
PromptOption = Annotated[str, typer.Option("--prompt", "-p", help="What to change.")]
WalletOption = Annotated[
    str, typer.Option("--wallet", "-w", envvar="STABLESTUDIO_WALLET", help="Name of a saved wallet block.")
]
AspectRatioOption = Annotated[
    str, typer.Option(help="Output aspect ratio: 1:1, 16:9, 9:16, 3:2, 2:3, 4:5, 5:4, 4:3 or 3:4.")
]
ResolutionOption = Annotated[str, typer.Option(help="0.5 MP, 1 MP or 2 MP (larger costs more).")]
FormatOption = Annotated[str, typer.Option("--format", help="png, jpg or webp.")]
_FLAGS = {
    "aspect_ratio": "--aspect-ratio", "resolution": "--resolution", "output_format": "--format",
    "output_quality": "--quality", "safety_tolerance": "--safety", "seed": "--seed",
    "prompt_upsampling": "--upsample",
}


def _dollars_option(value: str | None, option: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(
            f"{value!r} is not an amount in USD (e.g. 0.50)", param_hint=option
        ) from None
    if not amount.is_finite() or amount < 0:
        raise typer.BadParameter(f"{value!r} must be a positive amount in USD", param_hint=option)
    return amount


def _edit_options(images: list[str], prompt: str, **fields: Any) -> EditOptions:
    """The options of an edit, checked with the files and the prompt before anything runs or is paid."""
    from pydantic import ValidationError

    from prefect_stablestudio.flows.models import EditOptions

    for image in images:
        if "://" not in image and not Path(image).is_file():
            raise typer.BadParameter(f"{image}: no such file", param_hint="IMAGES")
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="--prompt")
    try:
        return EditOptions(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        raise typer.BadParameter(
            f"{error.get('input')!r}: {error['msg']}", param_hint=_FLAGS.get(field, field)
        ) from None


@app.command(context_settings=_PASSTHROUGH, add_help_option=False)
def simulator(ctx: typer.Context) -> None:
    """Run the local StableStudio simulator on 127.0.0.1 (see `simulator --help` for its options)."""
    from prefect_stablestudio.simulator.cli import main as simulator_main

    raise typer.Exit(simulator_main(list(ctx.args)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the sample images and the results.")] = Path(
        "out/demo"
    ),
    prompt: Annotated[str | None, typer.Option(help="The edit to apply to the samples.")] = None,
    latency: Annotated[float, typer.Option(min=0, help="Seconds each simulated job takes.")] = 3.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines.")] = False,
) -> None:
    """Edit the bundled sample images end to end on the local simulator with a throwaway wallet."""
    from prefect_stablestudio.demo import DEMO_PROMPT, DemoSettings, run_demo

    settings = DemoSettings(out=out, prompt=prompt or DEMO_PROMPT, latency_seconds=latency, verbose=verbose)
    raise typer.Exit(run(run_demo(settings)))


@app.command()
def edit(
    images: ImagesArgument,
    prompt: PromptOption,
    wallet: WalletOption = "default",
    out: Annotated[
        str, typer.Option("--out", "-o", help="Folder for the results: a path or s3://...")
    ] = "out",
    aspect_ratio: AspectRatioOption = "1:1",
    resolution: ResolutionOption = "1 MP",
    output_format: FormatOption = "png",
    quality: Annotated[int, typer.Option(help="Compression quality 0-100 (jpg, webp).")] = 80,
    safety: Annotated[int, typer.Option(help="Safety tolerance: 1 strictest, 5 loosest.")] = 2,
    seed: Annotated[int | None, typer.Option(help="Fixed seed for reproducible output.")] = None,
    upsample: Annotated[bool, typer.Option("--upsample", help="Let the model rewrite the prompt.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Edits in flight at once.")] = 4,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines.")] = False,
) -> None:
    """Edit images with Flux 2 Pro, paid from a saved wallet; a rerun of the same edit pays nothing."""
    options = _edit_options(
        images, prompt, aspect_ratio=aspect_ratio, resolution=resolution, output_format=output_format,
        output_quality=quality, safety_tolerance=safety, seed=seed, prompt_upsampling=upsample,
    )
    edits = _edit(images, prompt, wallet, out, options, verbose=verbose, concurrency=concurrency)
    raise typer.Exit(run(edits))


async def _edit(
    images: list[str],
    prompt: str,
    wallet: str,
    out: str,
    options: EditOptions,
    *,
    verbose: bool,
    concurrency: int,
) -> int:
    from prefect_stablestudio.console import quiet_prefect_console
    from prefect_stablestudio.editing import outcome_table, run_edits
    from prefect_stablestudio.quoting import quote_images
    from prefect_stablestudio.wallets import load_wallet_or_explain

    quiet_prefect_console(logging.NOTSET if verbose else logging.WARNING)
    block = await load_wallet_or_explain(wallet)
    console.print(f"Wallet {block.public_address} on {block.base_url}")
    # The flow checks again; checked here first, a batch that cannot finish is one clean error line.
    _, report = await quote_images(wallet, images, prompt, options)
    report.raise_if_short()
    edit_run = await run_edits(wallet, images, prompt, out, options, max_concurrency=concurrency)
    console.print(outcome_table(edit_run.result))
    console.print(f"Spent ${edit_run.result.spent_usd} in flow run {edit_run.flow_run_id}.")
    failed = edit_run.result.failed
    if failed:
        err_console.print(f"[bold red]{len(failed)} of {len(edit_run.result.outcomes)} edits failed.[/]")
    return 1 if failed else 0


@app.command()
def quote(
    images: ImagesArgument,
    prompt: PromptOption,
    wallet: WalletOption = "default",
    aspect_ratio: AspectRatioOption = "1:1",
    resolution: ResolutionOption = "1 MP",
    output_format: FormatOption = "png",
    intents: Annotated[
        str | None, typer.Option(help="Intent store of earlier runs (default: under PREFECT_HOME).")
    ] = None,
) -> None:
    """What editing these images would cost, line by line with each price's source, and whether the
    wallet's caps and balance can carry it. Nothing is paid. Exit 1 when a cap or the balance is short."""
    options = _edit_options(
        images, prompt, aspect_ratio=aspect_ratio, resolution=resolution, output_format=output_format
    )
    raise typer.Exit(run(_quote(images, prompt, wallet, options, intents)))


async def _quote(
    images: list[str], prompt: str, wallet: str, options: EditOptions, intents: str | None
) -> int:
    from prefect_stablestudio.console import quiet_prefect_console
    from prefect_stablestudio.quoting import quote_images, quote_table

    quiet_prefect_console()
    batch_quote, report = await quote_images(
        wallet, images, prompt, options, intent_store_url=intents
    )
    console.print(quote_table(batch_quote))
    for line in report.lines():
        console.print(f"  {line}")
    if report.short:
        err_console.print(f"[bold red]Not enough: {'; '.join(c.describe() for c in report.short)}.[/]")
        return 1
    console.print("Nothing was paid.")
    return 0


@wallet_app.command("create")
def wallet_create(
    name: Annotated[str, typer.Argument(help="Block name to save the wallet under.")],
    base_url: Annotated[str, typer.Option(help="StableStudio API origin.")] = "https://stablestudio.dev",
    blob_api_url: Annotated[
        str | None, typer.Option(help="Upload (blob) API origin, if not the default.")
    ] = None,
    base_rpc_url: Annotated[
        str | None, typer.Option(help="Base JSON-RPC URL, read for the wallet's USDC balance.")
    ] = None,
    max_per_call: Annotated[str, typer.Option(help="Largest single payment, USD.")] = "0.50",
    max_per_run: Annotated[str | None, typer.Option(help="Most one flow run may spend, USD.")] = None,
    max_per_day: Annotated[str | None, typer.Option(help="Most spent in any 24 hours, USD.")] = None,
    max_total: Annotated[str | None, typer.Option(help="Most this wallet may ever spend, USD.")] = None,
    pay_to: Annotated[
        list[str] | None, typer.Option("--pay-to", help="Allowed recipient address (repeatable).")
    ] = None,
    key_env: Annotated[str, typer.Option(help="Environment variable holding the private key.")] = KEY_ENV,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a block of the same name.")] = False,
) -> None:
    """Save a wallet block. The key is read from $STABLESTUDIO_PRIVATE_KEY or a hidden prompt, not argv.

    Spend caps are enforced by Prefect's server, across every worker that uses the block.
    """
    fields: dict[str, Any] = {
        "base_url": base_url,
        "blob_api_url": blob_api_url,
        "base_rpc_url": base_rpc_url,
        "max_usd_per_call": _dollars_option(max_per_call, "--max-per-call"),
        "max_usd_per_run": _dollars_option(max_per_run, "--max-per-run"),
        "max_usd_per_day": _dollars_option(max_per_day, "--max-per-day"),
        "max_usd_total": _dollars_option(max_total, "--max-total"),
        "allowed_pay_to": pay_to or None,
    }
    key = os.environ.get(key_env, "").strip()
    if not key:
        key = typer.prompt("Private key (hidden)", hide_input=True, err=True).strip()
    from prefect_stablestudio.wallets import create_wallet

    with err_console.status("Saving the block in Prefect..."):
        wallet = run(create_wallet(name, key, overwrite=overwrite, fields=fields))
    del key
    console.print(f"Saved wallet block [bold]{name}[/] for {wallet.public_address} ({wallet.base_url}).")
    _show(name)


@wallet_app.command("show")
def wallet_show(name: Annotated[str, typer.Argument(help="Block name.")]) -> None:
    """Address, endpoint, caps, spent and remaining of a wallet block (never its key)."""
    _show(name)


def _show(name: str) -> WalletReport:
    from rich.table import Table

    from prefect_stablestudio.client.money import usd_cap_from_atomic, usd_from_atomic
    from prefect_stablestudio.wallets import load_report

    report = run(load_report(name))
    console.print(f"[bold]{report.name}[/]")
    console.print(f"  address   {report.address}")
    console.print(f"  base URL  {report.base_url}")
    if report.blob_api_url:
        console.print(f"  blob API  {report.blob_api_url}")
    console.print(f"  networks  {', '.join(report.allowed_networks)}")
    console.print(f"  pay to    {', '.join(report.allowed_pay_to) if report.allowed_pay_to else 'any'}")
    for network, balance in report.balances:
        console.print(f"  balance   {balance} on {network}")
    table = Table(show_edge=False, header_style="bold")
    for column in ("cap", "limit", "spent", "remaining"):
        table.add_column(column)
    for row in report.rows:
        spent = "-" if row.spent is None else usd_from_atomic(row.spent)
        remaining = "-" if row.remaining is None else usd_from_atomic(row.remaining)
        table.add_row(row.name, usd_cap_from_atomic(row.limit), spent, remaining)
    console.print(table)
    return report


@app.command()
def budget(name: Annotated[str, typer.Argument(help="Wallet block name.")]) -> None:
    """Spend per cap of a wallet, as Prefect's server counts it, and the flow runs spending now."""
    from prefect_stablestudio.client.money import usd_cap_from_atomic, usd_from_atomic

    report = _show(name)
    if report.active_runs:
        console.print("Flow runs in progress (per-run caps):")
        for run_id, limit, spent in report.active_runs:
            console.print(f"  {run_id}: spent {usd_from_atomic(spent)} of {usd_cap_from_atomic(limit)}")
    if not any(row.spent is not None for row in report.rows):
        console.print("No 24 h or lifetime cap is set, so Prefect keeps no running total for this wallet.")


@app.command()
def spend(
    wallet: Annotated[
        str | None, typer.Option("--wallet", help="Only this wallet: its block name or its address.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only payments on or after this day (YYYY-MM-DD, UTC).")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write one row per payment, with an explorer link.")
    ] = None,
    receipts: Annotated[
        str | None,
        typer.Option("--receipts", help="The receipts ledger (local path or fsspec URL); default: the one "
                     "beside the default intent store, $PREFECT_HOME/stablestudio/intents/receipts."),
    ] = None,
) -> None:
    """Settled spend by day and route from the receipts ledger; payments of unknown outcome listed apart."""
    from datetime import date

    from rich.table import Table

    from prefect_stablestudio.client.money import plain_dollars_from_atomic, usd_from_atomic
    from prefect_stablestudio.flows.receipts import ReceiptBook
    from prefect_stablestudio.flows.spend_report import daily_totals, settled_total, write_csv

    try:
        day = date.fromisoformat(since) if since else None
    except ValueError:
        raise typer.BadParameter(f"{since!r} is not a day (YYYY-MM-DD)", param_hint="--since") from None
    book = ReceiptBook(receipts)
    found = run(book.read(since=day))
    if wallet:
        found = [r for r in found if wallet == r.wallet_block or wallet.lower() == r.wallet.lower()]
    table = Table(show_edge=False, header_style="bold")
    for column in ("day", "route", "payments", "spent (USD)"):
        table.add_column(column)
    for row in daily_totals(found):
        amount = plain_dollars_from_atomic(row.amount)
        table.add_row(row.day.isoformat(), row.route, str(row.payments), amount)
    console.print(table)
    console.print(f"Total settled: {usd_from_atomic(settled_total(found))} in "
                  f"{sum(1 for r in found if r.outcome == 'settled')} payments ({book.url}).")
    unknown = [r for r in found if r.outcome == "unknown"]
    if unknown:
        console.print(f"{len(unknown)} payment(s) of unknown outcome (reconcile by nonce):")
        for r in unknown:
            console.print(f"  {r.time:%Y-%m-%d %H:%M} {r.route} {usd_from_atomic(r.amount)} nonce {r.nonce}")
    if csv_file is not None:
        rows = write_csv(found, csv_file)
        console.print(f"Wrote {rows} rows to {csv_file}.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    # Our commands start short-lived local Prefect servers; their telemetry only fails offline (and locks
    # SQLite), so it is off unless the user set it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect waits 20 s for an ephemeral API, about what a first run's database migration takes alone: on a
    # busy machine `demo` and `edit` failed there. The CLI is its own process: the longer wait is ours to set.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        app(args=argv, prog_name="prefect-stablestudio", standalone_mode=True)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
