"""One paid job, start to end: the one procedure every route runs (the Flux 2 Pro edit and every other model).

`JobRunner.run` reads top to bottom like the data path:

    input (read, idempotency key: the caller) -> record (reuse a finished job; resume a paid one)
      -> quote (optional pre-flight, before any fee) -> upload (paid, each input once, blob URLs recorded)
      -> pay + record (caps, signed payment persisted before it is sent, job id after: `steps.submit_route`)
      -> poll -> save (the result, and a video's thumbnail) -> record complete -> artifact (the caller)

The same failure handling for every route (`flows/retries.py` has the counts and delays):
- a transient failure runs the job again, resuming from the record: a signed payment is re-sent, never signed
  anew; a recorded job is polled, never paid again;
- an upload that failed before paying is tried again on its own; one that failed after paying stops the
  job (`UploadFailedAfterPaying` lists the payments) and is never retried as part of the job (it would pay
  again);
- a job that failed is recorded `failed`, and a rerun raises `JobFailed` at once: it was paid, so it is not
  paid again (another idempotency key pays deliberately for a new attempt);
- a finished job whose file is intact is reused by a rerun: nothing paid, nothing downloaded.

Edits call it through `edit_one` (an `EditOutcome`, never raising); `flows/generate.py` through `generate`.
Jobs with the same key in one run are serialised: the second reuses what the first bought.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from prefect import get_run_logger

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.budget import SpendBudget, SpendCapExceeded
from prefect_stablestudio.client.downloads import ResultMedia
from prefect_stablestudio.client.errors import JobFailed, PaymentOutcomeUnknown, PolicyRefused
from prefect_stablestudio.client.media_types import extension_for
from prefect_stablestudio.client.models import EditRequest
from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.errors import FailedBeforePayment, UploadFailedAfterPaying
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, edit_intent_key
from prefect_stablestudio.flows.models import (
    EditItem,
    EditOptions,
    EditOutcome,
    EditStatus,
    UnreconciledPayment,
)
from prefect_stablestudio.flows.preflight import check_quote
from prefect_stablestudio.flows.quotes import quote_generation
from prefect_stablestudio.flows.retries import JOB_ATTEMPT_DELAYS, UPLOAD_DELAYS, worth_retrying
from prefect_stablestudio.flows.steps import StepClients
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
from prefect_stablestudio.flows.uploads import UploadedImage, upload

__all__ = ["JobRunner", "JobSpec", "JobTally", "OutputName", "edit_one", "edit_spec", "extension_for"]

_RESUMED_URL = "https://resumed.invalid/x"


@dataclass(frozen=True)
class OutputName:
    """Where a job's result goes: `folder/name`, or `folder/<stem>.<extension of the sniffed type>`."""

    folder: str
    name: str | None = None
    stem: str | None = None

    @property
    def fixed(self) -> str | None:
        """The result's URI when it is known before the job runs (a full name), else None."""
        return join_uri(self.folder, self.name) if self.name else None

    def uri(self, job_id: str, content_type: str, *, suffix: str = "", default_stem: str = "result") -> str:
        """The URI of the result (or, with `suffix="-thumbnail"`, of its thumbnail) of type `content_type`."""
        if self.name and not suffix:
            return join_uri(self.folder, self.name)
        stem = (PurePosixPath(self.name).stem if self.name else self.stem) or f"{default_stem}-{job_id}"
        return join_uri(self.folder, f"{stem}{suffix}.{extension_for(content_type)}")


@dataclass(frozen=True)
class JobSpec:
    """One paid job: the route, the request body (a function of the inputs' blob URLs), inputs, key, output.

    Args:
        model, operation: the route, `/api/generate/{model}/{operation}`.
        body: the wire body, given the inputs' blob URLs (validated by the route's request type).
        inputs: the input images, already read (`read_input`).
        key: the idempotency key (`intent_key`): one payment per key.
        output: where the result goes.
        label: how logs name the job, e.g. "edit of s3://photos/cat.png".
        media: "image" or "video" (the download limit and the sniffed types).
        preflight: quote the uploads and the call before paying anything, and refuse when a cap or the
            balance is short (a batch quotes all its jobs at once instead).
        expected_seconds, max_wait_seconds: the job's typical turnaround and the poll deadline.
    """

    model: str
    operation: str
    body: Callable[[list[str]], dict[str, Any]]
    inputs: list[InputImage]
    key: str
    output: OutputName
    label: str
    media: ResultMedia = "image"
    preflight: bool = False
    expected_seconds: float = 5.0
    max_wait_seconds: float = 600.0


@dataclass
class JobTally:
    """What a job has bought and produced so far, filled in as it goes (so a failure shows what was paid)."""

    upload_cost: int = 0
    job_id: str | None = None
    cost: int = 0
    paid_now: bool = False
    transaction: str | None = None
    output_uri: str | None = None
    sha256: str | None = None
    content_type: str | None = None
    thumbnail_uri: str | None = None
    reused: bool = False


@dataclass(eq=False, repr=False)  # identity: one runner is shared by a run's jobs; no wallet in reprs
class JobRunner:
    """Runs the paid jobs of one flow run: wallet, intent store, how to wait and save, a lock per key.

    Args:
        wallet: the paying wallet (its caps are reserved before every signature).
        store: where payment intents live.
        storage_options: fsspec options for inputs and outputs.
        budget: the caps a job's pre-flight checks (`JobSpec.preflight`).
        job_progress: a progress artifact per job (single jobs; a batch has its own).
        max_result_bytes: the most a result may weigh; None: the wallet's limit for its media.
        step_log_level: level of the steps' lines (uploaded, submitted, job status, saved).
        outcome_log_level: level of the one line per saved edit (failures are logged as errors).
    """

    wallet: StableStudioWallet
    store: IntentStore
    _: KW_ONLY
    storage_options: StorageOptions | None
    budget: SpendBudget | None = None
    job_progress: bool = True
    max_result_bytes: int | None = None
    step_log_level: int = logging.INFO
    outcome_log_level: int = logging.INFO
    # Two identical jobs of one run share a key: the second waits and reuses the first's paid job.
    locks: defaultdict[str, asyncio.Lock] = field(
        init=False, default_factory=lambda: defaultdict(asyncio.Lock)
    )

    async def run(self, clients: StepClients, job: JobSpec, tally: JobTally) -> None:
        """Run `job` to a saved result, again after transient failures; fills `tally` in as it goes.

        Raises:
            what stopped the job: `JobFailed`, `PolicyRefused` / `SpendCapExceeded`, `PaymentOutcomeUnknown`,
            `UploadFailedAfterPaying`, ... (`tally` says what was paid).
        """
        async with self.locks[job.key]:
            for delay in (*JOB_ATTEMPT_DELAYS, None):
                try:
                    await self._attempt(clients, job, tally)
                    return
                except _UploadsFailed as wrapped:
                    raise wrapped.error from None
                except Exception as exc:
                    if delay is None or not worth_retrying(exc):
                        raise
                    get_run_logger().warning(
                        "%s: %s: %s; trying again in %g s (resuming from the intent record)",
                        job.label, type(exc).__name__, str(exc)[:300], delay,
                    )
                    await asyncio.sleep(delay)

    async def _attempt(self, clients: StepClients, job: JobSpec, tally: JobTally) -> None:
        """One attempt, from the record on."""
        # record: reuse a finished job, resume a paid one
        intent = await self.store.get(job.key)
        if intent is not None:
            if await self._reuse(job, intent, tally):
                return
        else:
            intent = PaymentIntent(key=job.key, wallet=self.wallet.public_address)
        blob_urls = [rec.get("blob_url", "") for rec in intent.inputs]
        need_upload = len(blob_urls) != len(job.inputs) or not all(blob_urls)

        # quote: before the first fee, when nothing was paid for the job yet
        unpaid = intent.job_id is None and (intent.payment is None or intent.status == "rejected")
        if job.preflight and unpaid and self.budget is not None:
            known = not job.inputs or not need_upload
            path = f"/api/generate/{quote(job.model, safe='')}/{quote(job.operation, safe='')}"
            cost = await quote_generation(
                self.wallet, path, job.body(blob_urls) if known else None, job.inputs if need_upload else []
            )
            await check_quote(self.wallet, cost, self.budget, check=True, prefix="generate")

        # upload: each input once; the blob URLs recorded before anything else is paid
        if intent.job_id is None and intent.payment is None:
            if need_upload:
                try:
                    uploaded = await self._upload_all(clients, job, tally)
                    blob_urls = [u.blob_url for u in uploaded]
                    records = [
                        {"uri": i.uri, "sha256": i.sha256, "blob_url": b}
                        for i, b in zip(job.inputs, blob_urls, strict=True)
                    ]
                    intent = await self.store.put(intent.model_copy(update={"inputs": records}))
                except Exception as exc:
                    # Until the blob URLs are recorded, another attempt would pay for these uploads again.
                    raise _UploadsFailed(exc) from exc
            body = job.body(blob_urls)
        else:
            # Already paid (or signed): the recorded body is re-sent; this one only stands in.
            body = intent.request or job.body(
                blob_urls if not need_upload else [_RESUMED_URL] * len(job.inputs)
            )

        # pay + record
        paid = await steps.submit_route(
            clients, self.wallet, job.model, job.operation, body, job.key, self.store, known=intent
        )
        tally.job_id, tally.cost = paid.job_id, paid.cost
        # A later attempt resumes the job an earlier one paid for: that payment is still this run's.
        tally.paid_now, tally.transaction = tally.paid_now or paid.paid_now, paid.transaction

        # poll
        try:
            result = await steps.wait(
                clients, paid.job_id, max_wait_seconds=job.max_wait_seconds,
                expected_seconds=job.expected_seconds, report_progress=self.job_progress,
            )
        except JobFailed as exc:
            latest = await self.store.get(job.key) or intent
            await self.store.put(latest.model_copy(update={"status": "failed", "reason": exc.error}))
            raise
        if not result.media_url:
            raise RuntimeError(f"job {paid.job_id} completed without a result URL")

        # save
        default_stem = f"{job.model}-{job.operation}"
        saved = await steps.save(
            result.media_url,
            lambda content_type: job.output.uri(paid.job_id, content_type, default_stem=default_stem),
            storage_options=self.storage_options, clients=clients, media=job.media,
            max_bytes=self.max_result_bytes or self.wallet.result_limit(job.media),
        )
        if result.thumbnail_url:
            thumbnail = await steps.save(
                result.thumbnail_url,
                lambda content_type: job.output.uri(
                    paid.job_id, content_type, suffix="-thumbnail", default_stem=default_stem
                ),
                storage_options=self.storage_options, clients=clients, media="image",
                max_bytes=self.wallet.result_limit("image"),
            )
            tally.thumbnail_uri = thumbnail.uri

        # record complete
        latest = await self.store.get(job.key) or intent
        done = {"status": "complete", "output_uri": saved.uri, "output_sha256": saved.sha256}
        await self.store.put(latest.model_copy(update=done))
        tally.output_uri, tally.sha256, tally.content_type = saved.uri, saved.sha256, saved.content_type

    async def _upload_all(self, clients: StepClients, job: JobSpec, tally: JobTally) -> list[UploadedImage]:
        uploaded: list[UploadedImage] = []
        uploads = self.store.uploads()  # paid tickets, kept before their PUT and reused while valid
        for image in job.inputs:
            for delay in (*UPLOAD_DELAYS, None):
                try:
                    uploaded.append(
                        await upload(
                            clients, image, storage_options=self.storage_options, store=uploads
                        )
                    )
                    break
                except FailedBeforePayment as exc:
                    if delay is None:
                        raise
                    get_run_logger().warning("upload of %s: %s; retrying", image.uri[:200], exc)
                    await asyncio.sleep(delay)
            # Counted as each one lands: a later input failing must not hide this fee.
            tally.upload_cost += uploaded[-1].cost
        return uploaded

    async def _reuse(self, job: JobSpec, intent: PaymentIntent, tally: JobTally) -> bool:
        """Finish `tally` from the record alone (nothing paid, nothing polled); False to carry on."""
        tally.job_id, tally.transaction = intent.job_id, intent.transaction
        tally.cost = intent.payment.amount if intent.payment else 0
        if intent.status == "failed":
            raise JobFailed(
                intent.job_id or "?",
                f"{intent.reason}; it was paid, so not paying again. "
                "Pass another idempotency_key to pay for a new attempt",
            )
        if intent.status != "complete" or not intent.output_uri or not intent.output_sha256:
            return False
        sha, so = intent.output_sha256, self.storage_options
        target = job.output.fixed or intent.output_uri
        if not await exists_with_checksum(target, sha, so):
            if target == intent.output_uri or not await exists_with_checksum(intent.output_uri, sha, so):
                return False  # the saved copy is gone: resume the job and download again
            data = await read_bytes(intent.output_uri, so)
            await write_bytes(data, target, so)
            if sha256_hex(data) != sha:
                return False
        get_run_logger().log(
            steps.STEP_LOG_LEVEL.get(), "%s already done (job %s): reused %s",
            job.label, intent.job_id, target,
        )
        tally.output_uri, tally.sha256, tally.reused = target, sha, True
        return True


class _UploadsFailed(Exception):
    """An upload-step failure: never retried as a whole (see the module docstring)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def edit_spec(
    inputs: list[InputImage], prompt: str, options: EditOptions, *, key: str, output: OutputName,
    expected_seconds: float, max_wait_seconds: float,
) -> JobSpec:
    """The Flux 2 Pro edit of `inputs` as a paid job."""
    params = options.request_params()
    return JobSpec(
        model="flux-2-pro", operation="edit",
        body=lambda urls: EditRequest(prompt=prompt, images=urls, **params).body(),
        inputs=inputs, key=key, output=output, label=f"edit of {inputs[0].uri}",
        expected_seconds=expected_seconds, max_wait_seconds=max_wait_seconds,
    )


async def edit_one(
    runner: JobRunner,
    clients: StepClients,
    item: EditItem,
    *,
    default_prompt: str | None,
    destination: str,
    options: EditOptions,
    user_key: str | None,
    expected_seconds: float,
    max_wait_seconds: float,
) -> EditOutcome:
    """Run one edit end to end; never raises (the outcome says what happened and what was paid)."""
    started = time.monotonic()
    prompt = item.prompt or default_prompt or ""
    outcome = EditOutcome(images=list(item.images), prompt=prompt, status="failed", idempotency_key="")
    tally = JobTally()
    try:
        if not prompt:
            raise ValueError("no prompt: give one for the batch or for this item")
        inputs = [await read_input(uri, runner.storage_options) for uri in item.images]
        key = edit_intent_key(runner.wallet.public_address, inputs, prompt, options, user_key)
        outcome.idempotency_key = key
        output = OutputName(destination, name=item.output_name or _output_name(inputs[0], options))
        job = edit_spec(
            inputs, prompt, options, key=key, output=output,
            expected_seconds=expected_seconds, max_wait_seconds=max_wait_seconds,
        )
        await runner.run(clients, job, tally)
        outcome.status = "complete"
    except SpendCapExceeded as exc:
        outcome = _failed(outcome, "refused", f"{exc}")
    except PolicyRefused as exc:
        outcome = _failed(outcome, "refused", f"policy refused ({exc.reason}): {exc}")
    except UploadFailedAfterPaying as exc:
        outcome.unreconciled_payments.extend(exc.payments)
        # A settled fee was spent like any other; an unknown one is listed, not counted.
        settled = (p.amount_usd for p in exc.payments if p.status == "settled")
        outcome.upload_cost_usd += sum(settled, Decimal(0))
        unknown = any(p.status == "unknown" for p in exc.payments)
        outcome = _failed(
            outcome, "unknown" if unknown else "failed", f"{exc}. A rerun uploads (and pays the fee) again."
        )
    except PaymentOutcomeUnknown as exc:
        outcome.unreconciled_payments.append(
            UnreconciledPayment.of(exc.payment, what="edit", status="unknown", reason=str(exc))
        )
        outcome = _failed(
            outcome, "unknown",
            f"{exc}. Recorded; a rerun with the same inputs re-sends the same signed payment.",
        )
    except Exception as exc:
        outcome = _failed(outcome, "failed", f"{type(exc).__name__}: {exc}")
    outcome.upload_cost_usd += dollars_from_atomic(tally.upload_cost)
    outcome.job_id, outcome.transaction, outcome.paid_now = tally.job_id, tally.transaction, tally.paid_now
    outcome.cost_usd = dollars_from_atomic(tally.cost)
    if outcome.status == "complete":
        outcome.output_uri, outcome.sha256 = tally.output_uri, tally.sha256
    outcome.seconds = time.monotonic() - started
    logger = get_run_logger()
    if outcome.ok:
        paid = "" if outcome.paid_now else " paid earlier"
        logger.log(
            runner.outcome_log_level, "edit of %s saved to %s (job %s, $%s%s, %.1f s)", outcome.images[0],
            outcome.output_uri, outcome.job_id, outcome.cost_usd, paid, outcome.seconds,
        )
    else:
        logger.error("edit of %s %s: %s", outcome.images[0], outcome.status, outcome.error)
    return outcome


def _output_name(first: InputImage, options: EditOptions) -> str:
    stem = PurePosixPath(first.filename).stem or "image"
    return f"{stem}-edited.{options.output_format}"  # the format names are the extensions


def _failed(outcome: EditOutcome, status: EditStatus, error: str) -> EditOutcome:
    outcome.status, outcome.error = status, error[:1000]
    return outcome
