"""One edit of a batch, end to end, on a client shared with the other edits of its task run.

Each edit reads top to bottom like the architecture picture:

    read inputs -> idempotency key -> reconcile with the intent store -> upload (paid) -> submit (paid, caps
    reserved before signing, payment persisted before sending) -> job id persisted -> poll -> download at once
    -> write (fsspec/s3fs) -> intent complete

`EditBatch.edit` never raises: the returned `EditOutcome` says what happened and what was paid. Transient
failures after the uploads are retried here (1 s, then 4 s), each attempt starting from the intent record, so
a retry resumes the recorded job or re-sends the recorded payment and never signs a second one. Upload
failures are retried only while nothing was paid: the blob URLs are recorded once all inputs have landed.

Example:
    ```python
    batch = EditBatch(wallet, IntentStore(), destination="s3://edits/", options=EditOptions(), ...)
    async with steps.shared_client(wallet) as open_client:
        outcome = await batch.edit(open_client, EditItem(images=["s3://photos/cat.png"]), "make it snow")
    ```
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import KW_ONLY, dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath

import httpx
from prefect import get_run_logger

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.budget import SpendCapExceeded
from prefect_stablestudio.client.errors import (
    JobFailed,
    PaymentOutcomeUnknown,
    PolicyRefused,
    StableStudioError,
)
from prefect_stablestudio.client.models import EditRequest
from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, intent_key
from prefect_stablestudio.flows.models import (
    EditItem,
    EditOptions,
    EditOutcome,
    EditStatus,
    UnreconciledPayment,
)
from prefect_stablestudio.flows.reconcile import UploadFailedAfterPaying
from prefect_stablestudio.flows.steps import FailedBeforePayment, OpenClient, UploadedImage, is_transient
from prefect_stablestudio.flows.storage import (
    InputImage,
    StorageOptions,
    exists_with_checksum,
    join_uri,
    read_bytes,
    read_input,
    sha256_hex,
    write_bytes,
)

__all__ = ["OPERATION", "EditBatch", "edit_intent_key", "worth_retrying"]

OPERATION = "flux-2-pro/edit"
RETRY_DELAYS = (1.0, 4.0)
"""Seconds before the second and third attempt of an edit (after its uploads)."""
_UPLOAD_RETRY_DELAYS = (1.0, 4.0)
_EXTENSIONS = {"png": "png", "jpg": "jpg", "webp": "webp"}
_PATH_ERRORS = (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def worth_retrying(exc: BaseException) -> bool:
    """A network error, a rate limit, a 5xx, or the intent store / destination hiccupping (not a bad path).

    Example:
        >>> worth_retrying(ConnectionResetError("peer reset")), worth_retrying(FileNotFoundError("x.png"))
        (True, False)
    """
    server_error = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500
    store_error = isinstance(exc, OSError) and not isinstance(exc, (StableStudioError, *_PATH_ERRORS))
    return is_transient(exc) or server_error or store_error


def edit_intent_key(
    wallet: str, inputs: list[InputImage], prompt: str, options: EditOptions, user_key: str | None
) -> str:
    """The idempotency key of one edit: its wallet, inputs (URI and sha256), prompt, options and user key."""
    return intent_key(
        OPERATION,
        wallet,
        inputs=[(i.uri, i.sha256) for i in inputs],
        params={"prompt": prompt, **options.request_params()},
        user_key=user_key,
    )


class _UploadsFailed(Exception):
    """An upload-step failure: never retried as a whole (see the module docstring)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _output_name(first: InputImage, options: EditOptions) -> str:
    stem = PurePosixPath(first.filename).stem or "image"
    return f"{stem}-edited.{_EXTENSIONS[options.output_format]}"


@dataclass(eq=False, repr=False)  # identity, as the batch is one shared object; no wallet in reprs
class EditBatch:
    """What the edits of one flow run share: wallet, store, destination, and a lock per idempotency key.

    Args:
        wallet: the paying wallet (its caps are reserved before every signature).
        store: where payment intents live.
        destination: folder (local or fsspec URL) for the results.
        options: request settings shared by every edit.
        storage_options: fsspec options for inputs and outputs.
        user_key: mixed into every idempotency key (a new one pays deliberately for new edits).
        max_wait_seconds: how long to wait for each job.
        expected_job_seconds: typical job duration (the first poll comes near it).
        job_progress: a progress artifact per job (single edits; a batch has its own).
        max_result_bytes: the most a result may weigh; None: the wallet's image limit.
        step_log_level: level of the steps' lines (uploaded, submitted, job status, saved).
        outcome_log_level: level of the one line per saved edit (failures are logged as errors).
    """

    wallet: StableStudioWallet
    store: IntentStore
    _: KW_ONLY
    destination: str
    options: EditOptions
    storage_options: StorageOptions | None
    user_key: str | None
    max_wait_seconds: float
    expected_job_seconds: float
    job_progress: bool = True
    max_result_bytes: int | None = None
    step_log_level: int = logging.INFO
    outcome_log_level: int = logging.INFO
    # Two identical items of one batch share a key: the second waits and reuses the first's paid job.
    locks: defaultdict[str, asyncio.Lock] = field(
        init=False, default_factory=lambda: defaultdict(asyncio.Lock)
    )

    async def edit(self, open_client: OpenClient, item: EditItem, default_prompt: str | None) -> EditOutcome:
        """Run one edit end to end; never raises (the outcome says what happened and what was paid)."""
        started = time.monotonic()
        prompt = item.prompt or default_prompt or ""
        outcome = EditOutcome(images=list(item.images), prompt=prompt, status="failed", idempotency_key="")
        try:
            if not prompt:
                raise ValueError("no prompt: give one for the batch or for this item")
            inputs = [await read_input(uri, self.storage_options) for uri in item.images]
            key = edit_intent_key(self.wallet.public_address, inputs, prompt, self.options, self.user_key)
            outcome.idempotency_key = key
            target = join_uri(self.destination, item.output_name or _output_name(inputs[0], self.options))
            async with self.locks[key]:
                await self._attempts(open_client, outcome, inputs, key, target)
        except SpendCapExceeded as exc:
            outcome = _failed(outcome, "refused", f"{exc}")
        except PolicyRefused as exc:
            outcome = _failed(outcome, "refused", f"policy refused ({exc.reason}): {exc}")
        except UploadFailedAfterPaying as exc:
            outcome.unreconciled_payments.extend(exc.payments)
            # A settled fee was spent like any other; an unknown one is listed, not counted.
            outcome.upload_cost_usd += sum(
                (p.amount_usd for p in exc.payments if p.status == "settled"), Decimal(0)
            )
            unknown = any(p.status == "unknown" for p in exc.payments)
            outcome = _failed(
                outcome,
                "unknown" if unknown else "failed",
                f"{exc}. A rerun uploads (and pays the fee) again.",
            )
        except PaymentOutcomeUnknown as exc:
            outcome.unreconciled_payments.append(
                UnreconciledPayment.of(exc.payment, what="edit", status="unknown", reason=str(exc))
            )
            outcome = _failed(
                outcome,
                "unknown",
                f"{exc}. Recorded; a rerun with the same inputs re-sends the same signed payment.",
            )
        except Exception as exc:
            outcome = _failed(outcome, "failed", f"{type(exc).__name__}: {exc}")
        outcome.seconds = time.monotonic() - started
        logger = get_run_logger()
        if outcome.ok:
            paid = "" if outcome.paid_now else " paid earlier"
            logger.log(
                self.outcome_log_level,
                "edit of %s saved to %s (job %s, $%s%s, %.1f s)",
                outcome.images[0],
                outcome.output_uri,
                outcome.job_id,
                outcome.cost_usd,
                paid,
                outcome.seconds,
            )
        else:
            logger.error("edit of %s %s: %s", outcome.images[0], outcome.status, outcome.error)
        return outcome

    async def _attempts(
        self, open_client: OpenClient, outcome: EditOutcome, inputs: list[InputImage], key: str, target: str
    ) -> None:
        """`edit_keyed`, again after transient failures; each attempt resumes from the intent record."""
        for delay in (*RETRY_DELAYS, None):
            try:
                await self.edit_keyed(open_client, outcome, inputs, key, target)
                return
            except _UploadsFailed as wrapped:
                raise wrapped.error from None
            except Exception as exc:
                if delay is None or not worth_retrying(exc):
                    raise
                get_run_logger().warning(
                    "edit of %s: %s: %s; trying again in %g s (resuming from the intent record)",
                    outcome.images[0],
                    type(exc).__name__,
                    str(exc)[:300],
                    delay,
                )
                await asyncio.sleep(delay)

    async def _upload_all(
        self, open_client: OpenClient, outcome: EditOutcome, inputs: list[InputImage]
    ) -> list[UploadedImage]:
        uploaded: list[UploadedImage] = []
        uploads = self.store.uploads()  # paid tickets, kept before their PUT and reused while valid
        for image in inputs:
            for delay in (*_UPLOAD_RETRY_DELAYS, None):
                try:
                    uploaded.append(
                        await steps.upload(
                            open_client, image, storage_options=self.storage_options, store=uploads
                        )
                    )
                    break
                except FailedBeforePayment as exc:
                    if delay is None:
                        raise
                    get_run_logger().warning("upload of %s: %s; retrying", image.uri[:200], exc)
                    await asyncio.sleep(delay)
            # Counted as each one lands: a later input failing must not hide this fee.
            outcome.upload_cost_usd += dollars_from_atomic(uploaded[-1].cost)
        return uploaded

    async def edit_keyed(
        self, open_client: OpenClient, outcome: EditOutcome, inputs: list[InputImage], key: str, target: str
    ) -> None:
        """One attempt; fills `outcome` in as it goes, so a failure still reports what was paid."""
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
                    # Until the blob URLs are recorded, another attempt would pay for these uploads again.
                    raise _UploadsFailed(exc) from exc
            request = EditRequest(prompt=outcome.prompt, images=blob_urls, **self.options.request_params())
        else:
            # Already paid (or signed): submit_edit re-sends or resumes from the record; the body is the
            # recorded one, so this request's contents do not matter.
            request = (
                EditRequest(**intent.request)
                if intent.request
                else EditRequest(
                    prompt=outcome.prompt,
                    images=["https://resumed.invalid/x"],
                    **self.options.request_params(),
                )
            )

        paid = await steps.submit(open_client, self.wallet, request, key, self.store, known=intent)
        outcome.job_id, outcome.cost_usd = paid.job_id, dollars_from_atomic(paid.cost)
        # A later attempt resumes the job an earlier one paid for: that payment is still this run's.
        outcome.paid_now, outcome.transaction = outcome.paid_now or paid.paid_now, paid.transaction
        try:
            result = await steps.wait(
                open_client,
                paid.job_id,
                max_wait_seconds=self.max_wait_seconds,
                expected_seconds=self.expected_job_seconds,
                report_progress=self.job_progress,
            )
        except JobFailed as exc:
            latest = await self.store.get(key) or intent
            await self.store.put(latest.model_copy(update={"status": "failed", "reason": exc.error}))
            raise
        if not result.image_url:
            raise RuntimeError(f"job {paid.job_id} completed without an image URL")
        saved = await steps.save(
            result.image_url, target, storage_options=self.storage_options, open_client=open_client,
            max_bytes=self.max_result_bytes,
        )
        latest = await self.store.get(key) or intent
        done = {"status": "complete", "output_uri": saved.uri, "output_sha256": saved.sha256}
        await self.store.put(latest.model_copy(update=done))
        outcome.status, outcome.output_uri, outcome.sha256 = "complete", saved.uri, saved.sha256

    async def _reuse(self, outcome: EditOutcome, intent: PaymentIntent, target: str) -> bool:
        """Finish `outcome` from the record alone (nothing paid, nothing polled); False to carry on."""
        outcome.job_id, outcome.transaction = intent.job_id, intent.transaction
        outcome.cost_usd = dollars_from_atomic(intent.payment.amount) if intent.payment else Decimal(0)
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
        get_run_logger().log(
            steps.STEP_LOG_LEVEL.get(),
            "edit of %s already done (job %s): reused",
            outcome.images[0],
            intent.job_id,
        )
        outcome.status, outcome.output_uri, outcome.sha256 = "complete", target, sha
        return True


def _failed(outcome: EditOutcome, status: EditStatus, error: str) -> EditOutcome:
    outcome.status, outcome.error = status, error[:1000]
    return outcome
