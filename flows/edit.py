"""The flows: `edit_image` (one edit) and `edit_images` (a batch), usable alone, deployed, or as subflows.

A batch runs its edits in a few task runs ("Edit cat.png and 24 more") on one client (one connection pool),
all within the batch's `max_concurrency`. A task run per edit costs ~12 ms of
CPU here and ~40 ms in Prefect's API server (bench/), more than the edit itself; so by default a batch has at
most 8 task runs of up to 100 edits each (`edits_per_task` sets it; 1 gives a task run per edit). Every edit
still shows in the run's table artifact and its logs. What one edit does is the paid-job procedure,
`flows/paid_job.py` (`edit_one`).

The wallet is passed by block name: a Block-typed parameter breaks runs started from the UI (Prefect #14393).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Annotated, Any, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Failed
from prefect.utilities.annotations import quote
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import Field

from prefect_stablestudio.blocks.budget import current_flow_run_id, release_run_budget
from prefect_stablestudio.blocks.run_float import RUN_FLOAT
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.artifacts import (
    BatchProgress,
    artifact_key,
    edit_artifact,
    run_table_artifact,
    summary_artifact,
)
from prefect_stablestudio.flows.errors import EditBatchFailed, EditFailed
from prefect_stablestudio.flows.intents import IntentStore
from prefect_stablestudio.flows.models import BatchResult, EditItem, EditOptions, EditOutcome
from prefect_stablestudio.flows.paid_job import JobRunner, edit_one
from prefect_stablestudio.flows.preflight import before_paying
from prefect_stablestudio.flows.receipts import Receipt, ReceiptBook
from prefect_stablestudio.flows.steps import load_wallet
from prefect_stablestudio.flows.storage import StorageOptions

__all__ = [
    "edit_image",
    "edit_image_sync",
    "edit_images",
    "edit_images_sync",
    "edits_per_task_run",
]

_RUN_HOOKS: list[Any] = [release_run_budget]
AUTO_TASK_RUNS = 8
"""With `edits_per_task` unset, a batch is spread over at most this many task runs..."""
MAX_EDITS_PER_TASK = 100
"""...of at most this many edits each."""
SMALL_BATCH = 20
"""Batches of at most this many edits get a log line per edit and (unless `artifact_per_edit` says otherwise)
an image artifact per edit; larger ones a log line per tenth of the batch."""


def edits_per_task_run(edits: int, requested: int | None = None) -> int:
    """How many edits one task run of a batch carries: `requested`, or ceil(edits / 8) capped at 100.

    Example:
        >>> [edits_per_task_run(n) for n in (1, 8, 9, 200, 10_000)]
        [1, 1, 2, 25, 100]
        >>> edits_per_task_run(200, requested=1)
        1
    """
    if requested is not None:
        return max(1, requested)
    return min(MAX_EDITS_PER_TASK, max(1, math.ceil(edits / AUTO_TASK_RUNS)))


@dataclass
class BatchRun:
    """What the task runs of one batch share (in the flow's event loop: async tasks called from an async flow
    run inline in it): the job runner and its one client (one connection pool), the edits' settings, the
    concurrency gate, outcomes, progress."""

    runner: JobRunner
    clients: steps.StepClients
    prompt: str | None
    destination: str
    options: EditOptions
    user_key: str | None
    max_wait_seconds: float
    expected_job_seconds: float
    gate: asyncio.Semaphore
    progress: BatchProgress
    prefix: str
    artifact_per_edit: bool
    outcomes: list[EditOutcome | None] = field(default_factory=list)


def _label(items: list[EditItem]) -> str:
    first = PurePosixPath(items[0].images[0]).name[:80] or "image"
    return first if len(items) == 1 else f"{first} and {len(items) - 1} more"


@task(name="edit-group", task_run_name="Edit {label}", cache_policy=NO_CACHE)
async def edit_group(run: BatchRun, group: list[tuple[int, EditItem]], label: str) -> State[None] | None:
    """Run the edits of one group of a batch at once (within the batch's gate, on its client); Failed if any
    failed.

    Each edit retries its own transient failures (`flows/paid_job.py`); this task run is not retried, so a
    failure here never repeats the group's finished edits.
    """
    steps.STEP_LOG_LEVEL.set(run.runner.step_log_level)

    async def one(index: int, item: EditItem) -> None:
        async with run.gate:
            outcome = await edit_one(
                run.runner, run.clients, item, default_prompt=run.prompt, destination=run.destination,
                options=run.options, user_key=run.user_key, expected_seconds=run.expected_job_seconds,
                max_wait_seconds=run.max_wait_seconds,
            )
        run.outcomes[index] = outcome
        if outcome.ok and run.artifact_per_edit:
            await edit_artifact(outcome, prefix=run.prefix, storage_options=run.runner.storage_options)
        await run.progress.advance(outcome.ok)

    await asyncio.gather(*(one(index, item) for index, item in group))
    failed = [o for o in (run.outcomes[i] for i, _ in group) if o is not None and not o.ok]
    if failed:
        # A Failed state, not an exception: each edit has logged its own error, no traceback to add.
        first = f"{failed[0].images[0]}: {failed[0].error}"
        return Failed(message=f"{len(failed)} of {len(group)} edits failed (first: {first})"[:2000])
    return None


async def _run(**kwargs: Any) -> BatchResult:
    # These flows release the run's budget float in their hooks: they may reserve floats (blocks/budget.py).
    token = RUN_FLOAT.set(True)
    try:
        return await _run_batch(**kwargs)
    finally:
        RUN_FLOAT.reset(token)


async def _run_batch(
    *,
    wallet_block: str,
    items: list[EditItem],
    prompt: str | None,
    destination: str,
    options: EditOptions,
    storage_options: StorageOptions | None,
    idempotency_key: str | None,
    intent_store_url: str | None,
    intent_storage_options: StorageOptions | None,
    max_concurrency: int,
    max_wait_seconds: float,
    expected_job_seconds: float,
    artifact_prefix: str,
    max_result_bytes: int | None = None,
    edits_per_task: int | None = None,
    artifact_per_edit: bool | None = None,
    preflight: bool = False,
    reserve_upfront: bool = False,
    dry_run: bool = False,
) -> BatchResult:
    prefix = artifact_key(artifact_prefix) or "stablestudio"
    wallet = await load_wallet(wallet_block)
    run_id = current_flow_run_id()
    # Create the caps' limits now (the per-run one included) and fail early if Prefect cannot hold them.
    budget = await wallet.ensure_budget_limits(run_id)
    store = IntentStore(intent_store_url, intent_storage_options or storage_options)
    quoted: Decimal | None = None
    if preflight or reserve_upfront or dry_run:
        batch_quote = await before_paying(
            wallet, budget, items, prompt, options, store=store, storage_options=storage_options,
            user_key=idempotency_key, check=preflight or dry_run,
            reserve_upfront=reserve_upfront and not dry_run, prefix=prefix,
        )
        quoted = batch_quote.total_usd
        if dry_run:
            return BatchResult(outcomes=[], spent_usd=Decimal(0), quoted_usd=quoted)
    single, small = len(items) == 1, len(items) <= SMALL_BATCH
    runner = JobRunner(
        wallet, store, storage_options=storage_options, max_result_bytes=max_result_bytes,
        # A batch shows its progress in one artifact: one per job would cost an API write per poll (~10 ms of
        # CPU per edit, bench/) and bury the batch's own among hundreds.
        job_progress=single,
        # Steps log their lines (uploaded, submitted, job status) for one edit; a small batch logs a line per
        # edit, a large one a line per tenth (errors always). Prefect's console handler alone costs ~0.5 ms
        # of CPU per line (bench/).
        step_log_level=logging.INFO if single else logging.DEBUG,
        outcome_log_level=logging.INFO if small else logging.DEBUG,
    )
    progress = BatchProgress(len(items), prefix=prefix, log_tenths=not small)
    await progress.start()
    size = edits_per_task_run(len(items), edits_per_task)
    numbered = list(enumerate(items))
    groups = [numbered[i : i + size] for i in range(0, len(numbered), size)]
    book, started = ReceiptBook.beside(store), datetime.now(UTC).date()
    async with steps.one_client_for_steps(wallet, book) as clients:
        run = BatchRun(
            runner=runner, clients=clients, prompt=prompt, destination=destination, options=options,
            user_key=idempotency_key, max_wait_seconds=max_wait_seconds,
            expected_job_seconds=expected_job_seconds, gate=asyncio.Semaphore(max_concurrency),
            progress=progress, prefix=prefix,
            artifact_per_edit=small if artifact_per_edit is None else artifact_per_edit,
            outcomes=[None] * len(items),
        )
        # return_state: a task run with failed edits ends Failed in the UI, yet never stops its siblings.
        runs = [
            edit_group(
                cast(Any, quote(run)), cast(Any, quote(group)), _label([item for _, item in group]),
                return_state=True,
            )
            for group in groups
        ]
        states = await asyncio.gather(*cast(list[Awaitable[State[None]]], runs))
    outcomes: list[EditOutcome] = []
    for index, item in enumerate(items):
        outcome = run.outcomes[index]
        if outcome is None:  # its task run ended before this edit could report
            group_state = states[index // size]
            outcome = EditOutcome(
                images=list(item.images), prompt=item.prompt or prompt or "", status="failed",
                idempotency_key="", error=f"task run {group_state.name}: {group_state.message}"[:1000],
            )
        outcomes.append(outcome)
    spent = sum((o.upload_cost_usd + (o.cost_usd if o.paid_now else 0) for o in outcomes), Decimal(0))
    owed = [p for o in outcomes for p in o.unreconciled_payments]
    result = BatchResult(outcomes=outcomes, spent_usd=spent, unreconciled_payments=owed, quoted_usd=quoted)
    await run_table_artifact(outcomes, prefix=prefix)
    try:
        remaining: dict[str, int] = {str(k): v for k, v in (await budget.remaining()).items()}
    except Exception as exc:
        get_run_logger().warning("could not read the remaining budget: %s", exc)
        remaining = {}
    caps: dict[str, int | None] = {str(k): v for k, v in wallet.caps().items()}
    await summary_artifact(
        outcomes, prefix=prefix, wallet_address=wallet.public_address, spent=spent, caps=caps,
        remaining=remaining, storage_options=storage_options, receipts=await _run_receipts(book, started),
    )
    get_run_logger().info(
        "%d of %d edits saved; this run spent $%s", len(result.succeeded), len(outcomes), spent
    )
    if owed:
        get_run_logger().warning(
            "%d payment(s) to reconcile by nonce: %s", len(owed),
            "; ".join(f"{p.what} {p.nonce} ${p.amount_usd} {p.status}" for p in owed),
        )
    return result


async def _run_receipts(book: ReceiptBook, since: date) -> list[Receipt] | None:
    """This run's receipts from the ledger (None when it cannot be read: the summary says nothing then)."""
    run_id = current_flow_run_id()
    try:
        return [r for r in await book.read(since=since) if r.flow_run_id == run_id]
    except Exception as exc:
        get_run_logger().warning("receipts ledger %s not read: %s", book.url[:200], exc)
        return None


@flow(
    name="edit-image",
    on_completion=_RUN_HOOKS, on_failure=_RUN_HOOKS, on_cancellation=_RUN_HOOKS, on_crashed=_RUN_HOOKS,
)
async def edit_image(
    wallet_block: str,
    image: str,
    prompt: Annotated[str, Field(min_length=1, max_length=10_000, description="What to change.")],
    destination: Annotated[str, Field(description="Folder for the result: a local path or fsspec URL.")],
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    reference_images: list[str] | None = None,
    output_name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    intent_store_url: str | None = None,
    max_wait_seconds: float = 600.0,
    max_result_bytes: int | None = None,
    expected_job_seconds: float = 5.0,
    artifact_prefix: str = "stablestudio",
) -> EditOutcome:
    """Edit one image with Flux 2 Pro and save the result; pays at most once for the same inputs.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block.
        image: the image to edit: a local path or an fsspec URL such as s3://bucket/photo.png.
        prompt: what to change.
        destination: folder (local or fsspec URL) where the result is written.
        options: aspect ratio, resolution, format, quality, safety, seed.
        reference_images: up to 7 further images the prompt may refer to.
        output_name: file name of the result; default `<stem>-edited.<format>`.
        storage_options: fsspec options for inputs, output and (by default) the intent store.
        idempotency_key: change it to pay deliberately for another edit of the same inputs.
        intent_store_url: where payment intents live; default under PREFECT_HOME. Use s3://... when workers
            on several machines may resume each other's runs.
        max_wait_seconds: how long to wait for the job.
        max_result_bytes: the most the result may weigh; default the wallet's `max_image_result_bytes`
            (64 MiB). A larger result stops its download with `ResultTooLarge`; nothing is written.
        expected_job_seconds: typical job duration; the first poll comes near it (Flux 2 Pro: about 5 s).
        artifact_prefix: prefix of the artifact keys.

    Returns:
        The outcome: job id, cost, transaction, output URI and sha256.

    Raises:
        EditFailed: the edit did not produce a saved result (artifacts and the intent record say why).

    Example:
        ```python
        from prefect_stablestudio.flows import edit_image

        outcome = await edit_image("my-wallet", "s3://photos/cat.png", "make it snow", "s3://edits/")
        ```
    """
    item = EditItem(images=[image, *(reference_images or [])], prompt=prompt, output_name=output_name)
    result = await _run(
        wallet_block=wallet_block, items=[item], prompt=prompt, destination=destination, options=options,
        storage_options=storage_options, idempotency_key=idempotency_key, intent_store_url=intent_store_url,
        intent_storage_options=None, max_concurrency=1, max_wait_seconds=max_wait_seconds,
        max_result_bytes=max_result_bytes,
        expected_job_seconds=expected_job_seconds, artifact_prefix=artifact_prefix,
    )
    outcome = result.outcomes[0]
    if not outcome.ok:
        raise EditFailed(outcome)
    return outcome


@flow(
    name="edit-images",
    on_completion=_RUN_HOOKS, on_failure=_RUN_HOOKS, on_cancellation=_RUN_HOOKS, on_crashed=_RUN_HOOKS,
)
async def edit_images(
    wallet_block: str,
    items: list[EditItem],
    destination: Annotated[str, Field(description="Folder for the results: a local path or fsspec URL.")],
    prompt: Annotated[str | None, Field(max_length=10_000, description="Default prompt.")] = None,
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    max_concurrency: Annotated[int, Field(ge=1, le=64, description="Edits in flight at once.")] = 4,
    storage_options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    intent_store_url: str | None = None,
    max_wait_seconds: float = 600.0,
    max_result_bytes: int | None = None,
    expected_job_seconds: float = 5.0,
    fail_on_error: bool = True,
    artifact_prefix: str = "stablestudio",
    edits_per_task: Annotated[
        int | None, Field(ge=1, description="Edits per task run; empty: spread over at most 8 task runs.")
    ] = None,
    artifact_per_edit: Annotated[
        bool | None, Field(description="An image artifact per edit; empty: only for batches of up to 20.")
    ] = None,
    preflight: Annotated[
        bool, Field(description="Quote the batch and fail before paying if a cap or the balance is short.")
    ] = True,
    reserve_upfront: Annotated[
        bool, Field(description="Reserve the whole quote from the caps at the start; give back the rest.")
    ] = False,
    dry_run: Annotated[bool, Field(description="Quote and pre-flight only: pay nothing.")] = False,
) -> BatchResult:
    """Edit many images (one prompt, or one per item) with bounded concurrency; keep every success.

    Failures do not stop the batch: each edit is attempted, results are saved as they come, and the table,
    progress and summary artifacts list every outcome. With `fail_on_error` (the default) the run then ends
    Failed if any edit failed, so alerts fire; a rerun pays only for edits that were never paid.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block.
        items: the edits: each has 1-8 images (paths or fsspec URLs), an optional prompt and output name. A
            plain string is one image.
        destination: folder (local or fsspec URL) where results are written.
        prompt: prompt for items that have none.
        options: aspect ratio, resolution, format, quality, safety, seed (shared by all items).
        max_concurrency: edits in flight at once.
        storage_options: fsspec options for inputs, outputs and (by default) the intent store.
        idempotency_key: change it to pay deliberately for new edits of the same inputs.
        intent_store_url: where payment intents live; default under PREFECT_HOME.
        max_wait_seconds: how long to wait for each job.
        max_result_bytes: the most a result may weigh; default the wallet's `max_image_result_bytes`.
        expected_job_seconds: typical job duration; the first poll comes near it (Flux 2 Pro: about 5 s).
        fail_on_error: end the run Failed (raising `EditBatchFailed`, which carries the result) if any edit
            failed; otherwise return the result either way.
        artifact_prefix: prefix of the artifact keys.
        edits_per_task: edits carried by one task run (1: a task run per edit). Default: ceil(N / 8), at
            most 100. Task runs cost Prefect's API server more CPU than the edits themselves (bench/).
        artifact_per_edit: an image (or link) artifact per saved edit. Default: for batches of up to 20
            edits; the table and summary artifacts list every edit either way.
        preflight: before the first payment, quote the batch (`flows/quotes.py`, written as the `-quote`
            artifact) and fail with `PreflightRefused` if it exceeds what a cap (per run, 24 h, lifetime) has
            left or what the wallet holds (read when it has an RPC URL). Already-paid edits are not counted.
        reserve_upfront: reserve the whole quote from the caps in one all-or-nothing call at the start and
            spend from it, so other runs sharing the caps cannot starve this one halfway; what is left goes
            back when the run ends (a crash leaves it counted as spent).
        dry_run: quote and pre-flight only; pay nothing. The result has no outcomes and `quoted_usd` set.

    Example:
        ```python
        from prefect_stablestudio.flows import edit_images

        result = await edit_images(
            "my-wallet", ["s3://photos/a.png", "s3://photos/b.png"], "s3://edits/", prompt="make it snow"
        )
        print(len(result.succeeded), result.spent_usd)
        ```
    """
    result = await _run(
        wallet_block=wallet_block, items=list(items), prompt=prompt, destination=destination, options=options,
        storage_options=storage_options, idempotency_key=idempotency_key, intent_store_url=intent_store_url,
        intent_storage_options=None, max_concurrency=max_concurrency, max_wait_seconds=max_wait_seconds,
        max_result_bytes=max_result_bytes,
        expected_job_seconds=expected_job_seconds, artifact_prefix=artifact_prefix,
        edits_per_task=edits_per_task, artifact_per_edit=artifact_per_edit,
        preflight=preflight, reserve_upfront=reserve_upfront, dry_run=dry_run,
    )
    if fail_on_error and result.failed:
        raise EditBatchFailed(result)
    return result


def edit_image_sync(*args: Any, **kwargs: Any) -> EditOutcome:
    """`edit_image` for synchronous code, e.g. inside a sync parent flow (it still runs as a subflow).

    Calling an async flow from sync code returns a coroutine in Prefect 3; this runs it to completion, also
    when an event loop is already running in the thread.

    Example:
        ```python
        @flow
        def nightly() -> None:
            edit_image_sync("my-wallet", "s3://photos/cat.png", "make it snow", "s3://edits/")
        ```
    """
    return cast(EditOutcome, run_coro_as_sync(edit_image(*args, **kwargs)))


def edit_images_sync(*args: Any, **kwargs: Any) -> BatchResult:
    """`edit_images` for synchronous code (see `edit_image_sync`).

    Example:
        ```python
        result = edit_images_sync("my-wallet", ["s3://photos/a.png"], "s3://edits/", prompt="make it snow")
        ```
    """
    return cast(BatchResult, run_coro_as_sync(edit_images(*args, **kwargs)))
