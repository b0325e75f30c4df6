"""The pre-flight of a batch: its quote against what each spend cap has left and what the wallet holds.

Run before the first payment of every batch flow (`preflight=True`, the default): a batch that cannot
finish fails before anything is paid, naming each shortfall in dollars and the cap or balance that causes
it, instead of stopping halfway when a cap or the balance runs out. A balance that cannot be read because the
wallet has no RPC URL for that network is a warning ("not checked"), never an error; a node answering badly
is an error.

Example:
    ```python
    quote = await quote_batch(wallet, items, "make it snow", EditOptions(), store=store)
    report = await preflight(wallet, quote, wallet.budget(current_flow_run_id()))
    report.raise_if_short()
    ```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.budget import SpendBudget
from prefect_stablestudio.client.errors import PreflightRefused
from prefect_stablestudio.client.money import dollars_from_atomic, usd_exact_from_atomic, usd_from_atomic
from prefect_stablestudio.flows.artifacts import artifact_key
from prefect_stablestudio.flows.intents import IntentStore
from prefect_stablestudio.flows.models import EditItem, EditOptions
from prefect_stablestudio.flows.quotes import BatchQuote, quote_batch
from prefect_stablestudio.flows.storage import StorageOptions

__all__ = [
    "NEXT_RUN",
    "PreflightCheck",
    "PreflightReport",
    "before_paying",
    "check_quote",
    "preflight",
    "preflight_job",
    "quote_artifact",
    "quote_edits",
    "quote_edits_flow",
]


NEXT_RUN = "next-run"
"""A flow run id that names no run: its per-run limit does not exist, so the whole per-run cap is left, as it
will be for the run that pays for a quote made outside one (`quote_edits_flow`, the CLI)."""


@dataclass(frozen=True)
class PreflightCheck:
    """One comparison: what the batch needs against what a cap has left or a balance holds (atomic units)."""

    name: str
    needed: int
    available: int | None

    @property
    def shortfall(self) -> int:
        """How much is missing (0 when it is enough, or when `available` is unknown)."""
        return 0 if self.available is None else max(0, self.needed - self.available)

    def describe(self) -> str:
        """A line for people, e.g. `rolling 24 h cap: $0.20 left, short by $0.07`."""
        if self.available is None:
            return f"{self.name}: not checked"
        left = f"{self.name}: {usd_from_atomic(self.available)} left"
        return f"{left}, short by {usd_from_atomic(self.shortfall)}" if self.shortfall else f"{left}, enough"


@dataclass
class PreflightReport:
    """The checks of one batch and its warnings (e.g. a balance that was not checked)."""

    needed: int
    checks: list[PreflightCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def short(self) -> list[PreflightCheck]:
        """The checks that fail."""
        return [c for c in self.checks if c.shortfall]

    def lines(self) -> list[str]:
        """Every check and warning as a line."""
        return [c.describe() for c in self.checks] + self.warnings

    def raise_if_short(self) -> None:
        """Raise `PreflightRefused` naming every shortfall, if any.

        Raises:
            PreflightRefused: a cap has less left, or the wallet holds less, than the batch's quote.
        """
        short = self.short
        if not short:
            return
        what = "; ".join(
            f"{c.name} short by {usd_from_atomic(c.shortfall)} ({usd_from_atomic(c.available or 0)} left)"
            for c in short
        )
        raise PreflightRefused(
            f"this batch would cost {usd_exact_from_atomic(self.needed)} and cannot finish: {what}. "
            "Nothing was paid",
            shortfalls=[(c.name, c.shortfall) for c in short],
            needed=self.needed,
        )


async def preflight(wallet: StableStudioWallet, quote: BatchQuote, budget: SpendBudget) -> PreflightReport:
    """Compare the batch's quote with each cap's room (per run, rolling 24 h, lifetime) and the balance.

    Raises:
        RpcError: a chain node answered the balance read badly (a missing RPC URL is only a warning).
    """
    report = PreflightReport(needed=quote.priced_total)
    if quote.ceilings:
        # Held against nothing: a ceiling (the per-call cap, or a published maximum far above real prices)
        # would refuse batches that fit. The caps still refuse each payment that would break them.
        report.warnings.append(
            f"{len(quote.ceilings)} edit(s) could be priced only at a ceiling "
            f"({usd_from_atomic(sum(line.amount for line in quote.ceilings))} in all) and are not counted: "
            "the server quotes an edit once its images are uploaded, so a batch after one paid edit with "
            "these options is quoted exactly"
        )
    for cap_name, left in (await budget.remaining()).items():
        report.checks.append(PreflightCheck(f"{cap_name} cap", report.needed, left))
    # Fresh: a balance read before this batch's own or another run's payments would overstate it.
    balances = await wallet.balances(fresh=True)
    unchecked = [b.network for b in balances if b.amount is None]
    for network in unchecked:
        report.warnings.append(
            f"balance on {network} not checked: the wallet has no RPC URL for it "
            "(base_rpc_url, tempo_rpc_url)"
        )
    checked = [b for b in balances if b.amount is not None]
    if checked and not unchecked:
        # With payment method "auto" either network may pay a call: the batch fits when the sum does.
        name = "balance on " + " + ".join(b.network for b in checked)
        report.checks.append(PreflightCheck(name, report.needed, sum(b.amount or 0 for b in checked)))
    return report


async def quote_artifact(quote: BatchQuote, report: PreflightReport | None, *, prefix: str) -> None:
    """The quote as a table artifact (`<prefix>-quote`), the pre-flight's lines in its description.

    Never fails the run: an artifact that cannot be written is logged and skipped.
    """
    from prefect_stablestudio.flows.artifacts import _quietly

    notes = "" if report is None else " · ".join(report.lines())
    description = f"Quote: ${quote.total_usd:f} for {len(quote.lines)} lines" + (
        f". {notes}" if notes else ""
    )
    await _quietly(
        "quote",
        lambda: acreate_table_artifact(
            quote.rows(), key=artifact_key(prefix, "quote"), description=description[:5000]
        ),
    )


async def check_quote(
    wallet: StableStudioWallet, quote: BatchQuote, budget: SpendBudget, *, check: bool, prefix: str
) -> PreflightReport | None:
    """Log the quote, run the pre-flight (`check`), write the quote artifact, and raise when short.

    Raises:
        PreflightRefused: `check` and a cap or the balance is short (nothing paid).
    """
    logger = get_run_logger()
    report = await preflight(wallet, quote, budget) if check else None
    await quote_artifact(quote, report, prefix=prefix)
    logger.info(
        "quote: $%s for %d uploads and %d paid calls (%d already paid)",
        f"{quote.total_usd:f}",
        sum(1 for line in quote.lines if line.what == "upload"),
        sum(1 for line in quote.lines if line.what != "upload"),
        quote.already_paid,
    )
    if report is not None:
        for warning in report.warnings:
            logger.warning("pre-flight: %s", warning)
        report.raise_if_short()
        logger.info("pre-flight passed: %s", "; ".join(c.describe() for c in report.checks) or "no caps")
    return report


async def before_paying(
    wallet: StableStudioWallet,
    budget: SpendBudget,
    items: list[EditItem],
    prompt: str | None,
    options: EditOptions,
    *,
    store: IntentStore,
    storage_options: StorageOptions | None,
    user_key: str | None,
    check: bool,
    reserve_upfront: bool,
    prefix: str,
) -> BatchQuote:
    """A batch flow's start: quote the batch, write the quote artifact, run the pre-flight (`check`), and
    reserve the whole quote from the caps (`reserve_upfront`), all before the first payment.

    Raises:
        PreflightRefused: `check` and a cap or the balance is short (nothing paid).
        SpendCapExceeded: `reserve_upfront` and a cap cannot take the whole quote (nothing taken or paid).
    """
    logger = get_run_logger()
    quote = await quote_batch(
        wallet, items, prompt, options, store=store, storage_options=storage_options, user_key=user_key
    )
    await check_quote(wallet, quote, budget, check=check, prefix=prefix)
    if reserve_upfront and quote.priced_total:
        await budget.reserve_for_run(quote.priced_total)
        logger.info("reserved $%s from the caps for this run", f"{dollars_from_atomic(quote.priced_total):f}")
    return quote


async def preflight_job(
    wallet_block: str,
    items: list[EditItem],
    prompt: str | None,
    options: EditOptions,
    *,
    intent_store_url: str | None,
    storage_options: StorageOptions | None,
    user_key: str | None,
    prefix: str,
) -> BatchQuote:
    """The pre-flight of a job split over several runs (sharded, chunked), by its parent: the whole job
    against the caps the runs share (rolling 24 h, lifetime) and the balance. Each run then checks its own
    part against its per-run cap.

    Raises:
        PreflightRefused: a shared cap or the balance is short for the whole job (nothing paid).
    """
    from prefect_stablestudio.flows.steps import load_wallet

    wallet = await load_wallet(wallet_block)
    budget = await wallet.ensure_budget_limits(None)
    store = IntentStore(intent_store_url, storage_options)
    return await before_paying(
        wallet, budget, items, prompt, options, store=store, storage_options=storage_options,
        user_key=user_key, check=True, reserve_upfront=False, prefix=prefix,
    )


@task(name="quote-edits", cache_policy=NO_CACHE)
async def quote_edits(
    wallet_block: str,
    items: list[EditItem],
    prompt: str | None = None,
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    storage_options: dict[str, Any] | None = None,
    intent_store_url: str | None = None,
    idempotency_key: str | None = None,
) -> BatchQuote:
    """What `edit_images` would pay for these arguments, line by line with each price's source; pays nothing.

    Uncached: a quote is only true now (prices drift, a rerun finds edits already paid).

    Example:
        ```python
        quote = await quote_edits("my-wallet", ["s3://in/a.png", "s3://in/b.png"], "make it snow")
        print(quote.total_usd, quote.rows())
        ```
    """
    from prefect_stablestudio.flows.steps import load_wallet

    wallet = await load_wallet(wallet_block)
    return await quote_batch(
        wallet, items, prompt, options, store=IntentStore(intent_store_url, storage_options),
        storage_options=storage_options, user_key=idempotency_key,
    )


@flow(name="quote-edits")
async def quote_edits_flow(
    wallet_block: str,
    items: list[EditItem],
    prompt: Annotated[str | None, Field(max_length=10_000, description="Default prompt.")] = None,
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    storage_options: dict[str, Any] | None = None,
    intent_store_url: str | None = None,
    idempotency_key: str | None = None,
    artifact_prefix: str = "stablestudio",
) -> BatchQuote:
    """Quote a batch and run its pre-flight against the wallet's caps (a whole per-run cap, as a run editing
    the batch would have; 24 h; lifetime) and balance, without paying or failing: the quote table artifact
    carries the pre-flight's lines, shortfalls included.

    Example:
        ```python
        quote = await quote_edits_flow("my-wallet", ["s3://in/a.png"], prompt="make it snow")
        ```
    """
    from prefect_stablestudio.flows.steps import load_wallet

    quote = await quote_edits(
        wallet_block, items, prompt, options, storage_options, intent_store_url, idempotency_key
    )
    wallet = await load_wallet(wallet_block)
    report = await preflight(wallet, quote, wallet.budget(NEXT_RUN))
    await quote_artifact(quote, report, prefix=artifact_key(artifact_prefix) or "stablestudio")
    logger = get_run_logger()
    logger.info("quote: $%s; %s", f"{quote.total_usd:f}", "; ".join(report.lines()) or "no caps")
    for check in report.short:
        logger.warning("would be refused: %s", check.describe())
    return quote
