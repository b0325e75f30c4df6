"""The flows: `edit_image` (one edit) and `edit_images` (a batch), usable alone, deployed, or as subflows.

Each edit reads top to bottom like the architecture picture:

    read inputs -> idempotency key -> reconcile with the intent store -> upload (paid) -> submit (paid, caps
    reserved before signing, payment persisted before sending) -> job id persisted -> poll -> download at once
    -> write (fsspec/s3fs) -> intent complete -> artifacts

The wallet is passed by block name: a Block-typed parameter breaks runs started from the UI (Prefect #14393).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Annotated, Any, cast

import httpx
from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.utilities.annotations import quote
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import Field

from blocks import StableStudioWallet
from blocks.budget import RUN_FLOAT, SpendCapExceeded, current_flow_run_id, release_run_budget
from flows import steps
from flows.artifacts import BatchProgress, artifact_key, edit_artifact, run_table_artifact, summary_artifact
from flows.intents import IntentStore, PaymentIntent, intent_key
from flows.models import BatchResult, EditItem, EditOptions, EditOutcome, EditStatus, UnreconciledPayment
from flows.reconcile import UploadFailedAfterPaying
from flows.steps import FailedBeforePayment, OpenClient, UploadedImage, is_transient
from flows.storage import (
    InputImage,
    StorageOptions,
    exists_with_checksum,
    join_uri,
    read_bytes,
    read_input,
    sha256_hex,
    write_bytes,
)
from flows.tasks import load_wallet
from stablestudio.errors import JobFailed, PaymentOutcomeUnknown, PolicyRefused, StableStudioError
from stablestudio.models import EditRequest
from stablestudio.money import to_dollars

__all__ = [
    "EditBatchFailed",
    "EditFailed",
    "edit_image",
    "edit_image_sync",
    "edit_images",
    "edit_images_sync",
]

OPERATION = "flux-2-pro/edit"
_EXTENSIONS = {"png": "png", "jpg": "jpg", "webp": "webp"}
_RUN_HOOKS: list[Any] = [release_run_budget]


class EditFailed(RuntimeError):
    """An edit did not produce a saved result. `outcome` says why (and whether it was paid)."""

    def __init__(self, outcome: EditOutcome) -> None:
        super().__init__(f"edit of {outcome.images[0]} {outcome.status}: {outcome.error}")
        self.outcome = outcome


class EditBatchFailed(RuntimeError):
    """Some edits of a batch failed; the others are saved. `result` holds every outcome."""

    def __init__(self, result: BatchResult) -> None:
        failed = result.failed
        first = f" (first: {failed[0].images[0]}: {failed[0].error})" if failed else ""
        super().__init__(f"{len(failed)} of {len(result.outcomes)} edits failed{first}")
        self.result = result


class _NotRetried(Exception):
    """Carries an upload-step failure out of the per-edit task without a task retry.

    A retry would upload (and pay for) again inputs uploaded before the failing one: the blob URLs are
    recorded only once all have landed. An upload failing before paying is retried inside the step instead.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


_UPLOAD_RETRY_DELAYS = (1.0, 4.0)
_PATH_ERRORS = (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _retry_edit(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry the per-edit task on transient errors after the uploads: it resumes from the intent record."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None or isinstance(exc, _NotRetried):
        return False
    server_error = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500
    # An OSError is the intent store or the destination (e.g. S3) hiccupping, unless it is about the path.
    store_error = isinstance(exc, OSError) and not isinstance(exc, (StableStudioError, *_PATH_ERRORS))
    return is_transient(exc) or server_error or store_error


class _Attempt:
    """The outcome an edit fills in as it goes, so a failure still reports what was paid."""

    def __init__(self, outcome: EditOutcome) -> None:
        self.outcome = outcome


def _output_name(first: InputImage, options: EditOptions) -> str:
    stem = PurePosixPath(first.filename).stem or "image"
    return f"{stem}-edited.{_EXTENSIONS[options.output_format]}"


class _Batch:
    """What the edits of one flow run share: wallet, store, destination, and a lock per idempotency key."""

    def __init__(
        self,
        wallet: StableStudioWallet,
        store: IntentStore,
        *,
        destination: str,
        options: EditOptions,
        storage_options: StorageOptions | None,
        user_key: str | None,
        max_wait_seconds: float,
        expected_job_seconds: float,
        prefix: str,
        job_progress: bool = True,
    ) -> None:
        self.wallet = wallet
        self.store = store
        self.destination = destination
        self.options = options
        self.storage_options = storage_options
        self.user_key = user_key
        self.max_wait_seconds = max_wait_seconds
        self.expected_job_seconds = expected_job_seconds
        self.prefix = prefix
        self.job_progress = job_progress
        # Two identical items of one batch share a key: the second waits and reuses the first's paid job.
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def edit(self, item: EditItem, default_prompt: str | None) -> EditOutcome:
        """Run one edit end to end; never raises (the outcome says what happened)."""
        started = time.monotonic()
        prompt = item.prompt or default_prompt or ""
        outcome = EditOutcome(images=list(item.images), prompt=prompt, status="failed", idempotency_key="")
        try:
            if not prompt:
                raise ValueError("no prompt: give one for the batch or for this item")
            inputs = [await read_input(uri, self.storage_options) for uri in item.images]
            key = intent_key(
                OPERATION,
                self.wallet.public_address,
                inputs=[(i.uri, i.sha256) for i in inputs],
                params={"prompt": prompt, **self.options.request_params()},
                user_key=self.user_key,
            )
            outcome.idempotency_key = key
            target = join_uri(self.destination, item.output_name or _output_name(inputs[0], self.options))
            async with self.locks[key]:
                label = PurePosixPath(inputs[0].filename or item.images[0]).name[:100]
                try:
                    # quote(): Prefect hands these to the task as is, without walking (and copying) them.
                    await edit_one(
                        cast(Any, quote(self)), cast(Any, quote(_Attempt(outcome))), cast(Any, quote(inputs)),
                        key, target, label,
                    )
                except _NotRetried as wrapped:
                    raise wrapped.error from None
        except SpendCapExceeded as exc:
            outcome = self._failed(outcome, "refused", f"{exc}")
        except PolicyRefused as exc:
            outcome = self._failed(outcome, "refused", f"policy refused ({exc.reason}): {exc}")
        except UploadFailedAfterPaying as exc:
            outcome.unreconciled_payments.extend(exc.payments)
            # A settled fee was spent like any other; an unknown one is listed, not counted.
            outcome.upload_cost_usd += sum(
                (p.amount_usd for p in exc.payments if p.status == "settled"), Decimal(0)
            )
            unknown = any(p.status == "unknown" for p in exc.payments)
            outcome = self._failed(
                outcome, "unknown" if unknown else "failed",
                f"{exc}. A rerun uploads (and pays the fee) again.",
            )
        except PaymentOutcomeUnknown as exc:
            outcome.unreconciled_payments.append(
                UnreconciledPayment.of(exc.payment, what="edit", status="unknown", reason=str(exc))
            )
            outcome = self._failed(
                outcome, "unknown",
                f"{exc}. Recorded; a rerun with the same inputs re-sends the same signed payment.",
            )
        except Exception as exc:
            outcome = self._failed(outcome, "failed", f"{type(exc).__name__}: {exc}")
        outcome.seconds = time.monotonic() - started
        if outcome.ok:
            await edit_artifact(outcome, prefix=self.prefix, storage_options=self.storage_options)
        else:
            get_run_logger().error("edit of %s %s: %s", outcome.images[0], outcome.status, outcome.error)
        return outcome

    @staticmethod
    def _failed(outcome: EditOutcome, status: EditStatus, error: str) -> EditOutcome:
        outcome.status, outcome.error = status, error[:1000]
        return outcome

    async def _upload_all(
        self, open_client: OpenClient, outcome: EditOutcome, inputs: list[InputImage]
    ) -> list[UploadedImage]:
        uploaded: list[UploadedImage] = []
        for image in inputs:
            for delay in (*_UPLOAD_RETRY_DELAYS, None):
                try:
                    uploaded.append(
                        await steps.upload(open_client, image, storage_options=self.storage_options)
                    )
                    break
                except FailedBeforePayment as exc:
                    if delay is None:
                        raise
                    get_run_logger().warning("upload of %s: %s; retrying", image.uri[:200], exc)
                    await asyncio.sleep(delay)
            # Counted as each one lands: a later input failing must not hide this fee.
            outcome.upload_cost_usd += to_dollars(uploaded[-1].cost)
        return uploaded

    async def edit_keyed(
        self, open_client: OpenClient, outcome: EditOutcome, inputs: list[InputImage], key: str, target: str
    ) -> None:
        """Fill `outcome` in as the edit progresses, so a failure still reports what was paid."""
        logger = get_run_logger()
        intent = await self.store.get(key)
        if intent is not None:
            if await self._reuse(outcome, intent, target):
                return
        else:
            intent = PaymentIntent(key=key, wallet=self.wallet.public_address)

        if intent.job_id is None and intent.payment is None:
            blob_urls = [rec.get("blob_url", "") for rec in intent.inputs]
            if len(blob_urls) != len(inputs) or not all(blob_urls):
                try:
                    uploaded = await self._upload_all(open_client, outcome, inputs)
                    blob_urls = [u.blob_url for u in uploaded]
                    records = [
                        {"uri": i.uri, "sha256": i.sha256, "blob_url": b}
                        for i, b in zip(inputs, blob_urls, strict=True)
                    ]
                    intent = await self.store.put(intent.model_copy(update={"inputs": records}))
                except Exception as exc:
                    # Until the blob URLs are recorded, a task retry would pay for these uploads again.
                    raise _NotRetried(exc) from exc
            request = EditRequest(prompt=outcome.prompt, images=blob_urls, **self.options.request_params())
        else:
            # Already paid (or signed): submit_edit re-sends or resumes from the record; the body is the
            # recorded one, so this request's contents do not matter.
            request = EditRequest(**intent.request) if intent.request else EditRequest(
                prompt=outcome.prompt, images=["https://resumed.invalid/x"], **self.options.request_params()
            )

        paid = await steps.submit(open_client, self.wallet, request, key, self.store)
        outcome.job_id, outcome.cost_usd = paid.job_id, to_dollars(paid.cost)
        # A task retry resumes the job an earlier attempt paid for: that payment is still this run's.
        outcome.paid_now, outcome.transaction = outcome.paid_now or paid.paid_now, paid.transaction
        try:
            result = await steps.wait(
                open_client, paid.job_id, max_wait_seconds=self.max_wait_seconds,
                expected_seconds=self.expected_job_seconds, report_progress=self.job_progress,
            )
        except JobFailed as exc:
            latest = await self.store.get(key) or intent
            await self.store.put(latest.model_copy(update={"status": "failed", "reason": exc.error}))
            raise
        if not result.image_url:
            raise RuntimeError(f"job {paid.job_id} completed without an image URL")
        saved = await steps.save(result.image_url, target, storage_options=self.storage_options)
        latest = await self.store.get(key) or intent
        done = {"status": "complete", "output_uri": saved.uri, "output_sha256": saved.sha256}
        await self.store.put(latest.model_copy(update=done))
        logger.info("edit of %s saved to %s", outcome.images[0], saved.uri)
        outcome.status, outcome.output_uri, outcome.sha256 = "complete", saved.uri, saved.sha256

    async def _reuse(self, outcome: EditOutcome, intent: PaymentIntent, target: str) -> bool:
        """Finish `outcome` from the record alone (nothing paid, nothing polled); False to carry on."""
        outcome.job_id, outcome.transaction = intent.job_id, intent.transaction
        outcome.cost_usd = to_dollars(intent.payment.amount) if intent.payment else Decimal(0)
        if intent.status == "failed":
            raise JobFailed(
                intent.job_id or "?",
                f"{intent.reason}; it was paid, so not paying again. "
                "Pass another idempotency_key to pay for a new attempt",
            )
        if intent.status != "complete" or not intent.output_uri or not intent.output_sha256:
            return False
        sha = intent.output_sha256
        if not await exists_with_checksum(target, sha, self.storage_options):
            if not await exists_with_checksum(intent.output_uri, sha, self.storage_options):
                return False  # the saved copy is gone: resume the job and download again
            data = await read_bytes(intent.output_uri, self.storage_options)
            await write_bytes(data, target, self.storage_options)
            if sha256_hex(data) != sha:
                return False
        get_run_logger().info("edit of %s already done (job %s): reused", outcome.images[0], intent.job_id)
        outcome.status, outcome.output_uri, outcome.sha256 = "complete", target, sha
        return True


@task(
    name="edit-one",
    task_run_name="Edit {label}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_edit,
)
async def edit_one(
    batch: _Batch, attempt: _Attempt, inputs: list[InputImage], key: str, target: str, label: str
) -> None:
    """Upload, submit, wait and save one edit on a single client (one task run, not four).

    Every attempt starts from the intent record: a retry resumes the recorded job or re-sends the recorded
    payment, never signs a second one.
    """
    async with steps.shared_client(batch.wallet) as open_client:
        await batch.edit_keyed(open_client, attempt.outcome, inputs, key, target)


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
) -> BatchResult:
    prefix = artifact_key(artifact_prefix) or "stablestudio"
    wallet = await load_wallet(wallet_block)
    run_id = current_flow_run_id()
    # Create the caps' limits now (the per-run one included) and fail early if Prefect cannot hold them.
    budget = await wallet.ensure_budget_limits(run_id)
    store = IntentStore(intent_store_url, intent_storage_options or storage_options)
    batch = _Batch(
        wallet, store, destination=destination, options=options, storage_options=storage_options,
        user_key=idempotency_key, max_wait_seconds=max_wait_seconds,
        expected_job_seconds=expected_job_seconds, prefix=prefix,
        # A batch shows its progress in one artifact: one per job would cost an API write per poll (~10 ms of
        # CPU per edit, bench/) and bury the batch's own among hundreds.
        job_progress=len(items) == 1,
    )
    progress = BatchProgress(len(items), prefix=prefix)
    await progress.start()
    gate = asyncio.Semaphore(max_concurrency)

    async def one(item: EditItem) -> EditOutcome:
        async with gate:
            outcome = await batch.edit(item, prompt)
        await progress.advance()
        return outcome

    outcomes = list(await asyncio.gather(*(one(item) for item in items)))
    spent = sum((o.upload_cost_usd + (o.cost_usd if o.paid_now else 0) for o in outcomes), Decimal(0))
    owed = [p for o in outcomes for p in o.unreconciled_payments]
    result = BatchResult(outcomes=outcomes, spent_usd=spent, unreconciled_payments=owed)
    await run_table_artifact(outcomes, prefix=prefix)
    try:
        remaining: dict[str, int] = {str(k): v for k, v in (await budget.remaining()).items()}
    except Exception as exc:
        get_run_logger().warning("could not read the remaining budget: %s", exc)
        remaining = {}
    caps: dict[str, int | None] = {str(k): v for k, v in wallet.caps().items()}
    await summary_artifact(
        outcomes, prefix=prefix, wallet_address=wallet.public_address, spent=spent, caps=caps,
        remaining=remaining, storage_options=storage_options,
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
        expected_job_seconds: typical job duration; the first poll comes near it (Flux 2 Pro: about 5 s).
        artifact_prefix: prefix of the artifact keys.

    Returns:
        The outcome: job id, cost, transaction, output URI and sha256.

    Raises:
        EditFailed: the edit did not produce a saved result (artifacts and the intent record say why).

    Example:
        ```python
        from flows import edit_image

        outcome = await edit_image("my-wallet", "s3://photos/cat.png", "make it snow", "s3://edits/")
        ```
    """
    item = EditItem(images=[image, *(reference_images or [])], prompt=prompt, output_name=output_name)
    result = await _run(
        wallet_block=wallet_block, items=[item], prompt=prompt, destination=destination, options=options,
        storage_options=storage_options, idempotency_key=idempotency_key, intent_store_url=intent_store_url,
        intent_storage_options=None, max_concurrency=1, max_wait_seconds=max_wait_seconds,
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
    expected_job_seconds: float = 5.0,
    fail_on_error: bool = True,
    artifact_prefix: str = "stablestudio",
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
        expected_job_seconds: typical job duration; the first poll comes near it (Flux 2 Pro: about 5 s).
        fail_on_error: end the run Failed (raising `EditBatchFailed`, which carries the result) if any edit
            failed; otherwise return the result either way.
        artifact_prefix: prefix of the artifact keys.

    Example:
        ```python
        from flows import edit_images

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
        expected_job_seconds=expected_job_seconds, artifact_prefix=artifact_prefix,
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
