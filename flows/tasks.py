"""Prefect tasks: upload an image, submit a paid edit, wait for the job, save the result.

Each task creates its own HTTP client (a submitted task may run on its own event loop) and takes the wallet
by block name or as a block. Retries are chosen so that none can pay twice:

- `upload_image` retries only failures that happened before anything was signed;
- `submit_edit` reconciles with the payment-intent store on every attempt (a retry re-sends the same signed
  authorization, or resumes the recorded job), and never retries refusals or an unknown outcome;
- `wait_for_job` and `save_result` move no money and retry transient errors; `wait_for_job` is never cached.

Example:
    ```python
    from flows.tasks import submit_edit, upload_image, wait_for_job, save_result

    blob = await upload_image("my-wallet", "s3://photos/cat.png")
    job = await submit_edit("my-wallet", EditRequest(prompt="snow", images=[blob.blob_url]), key)
    result = await wait_for_job("my-wallet", job.job_id)
    saved = await save_result(result.image_url, "s3://edits/cat.png")
    ```
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect import Task, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import BaseModel, ConfigDict

from blocks import StableStudioWallet
from flows.intents import IntentHooks, IntentStore, PaymentIntent, PaymentTerms
from flows.models import SavedResult
from flows.reconcile import PaymentLog, UploadFailedAfterPaying
from flows.storage import InputImage, StorageOptions, content_type_for, read_input, sha256_hex, write_bytes
from stablestudio import tls_context
from stablestudio.errors import RateLimited, StableStudioError, UpstreamError
from stablestudio.models import EditRequest, Job, JobResult
from stablestudio.money import to_dollars
from stablestudio.payment import Payment

__all__ = [
    "PaidJob",
    "UploadedImage",
    "WalletRef",
    "load_wallet",
    "save_result",
    "submit_edit",
    "upload_image",
    "wait_for_job",
]

WalletRef = str | StableStudioWallet
"""A saved block's name, or a block instance."""

_TRANSIENT = (httpx.TransportError, RateLimited)


async def load_wallet(wallet: WalletRef) -> StableStudioWallet:
    """The wallet block itself, loading it by name when given a string."""
    if isinstance(wallet, StableStudioWallet):
        return wallet
    return await StableStudioWallet.aload(wallet)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, UpstreamError) and exc.status >= 500


class UploadedImage(BaseModel):
    """An input image uploaded to StableStudio's blob store."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    blob_url: str
    cost: int = 0


class PaidJob(BaseModel):
    """A submitted, paid edit job and the payment that bought it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    idempotency_key: str
    payment: Payment | None
    transaction: str | None = None
    paid_now: bool = False

    @property
    def cost(self) -> int:
        """Atomic units."""
        return self.payment.amount if self.payment else 0


class FailedBeforePayment(StableStudioError):
    """A transient failure before anything was signed: retrying cannot pay twice."""


def _exception_of(state: State[Any]) -> BaseException | None:
    # The engine hands retry conditions a Failed state whose data is the exception itself.
    return state.data if isinstance(state.data, BaseException) else None


def _retry_before_payment(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    return isinstance(_exception_of(state), FailedBeforePayment)


def _retry_submit(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    exc = _exception_of(state)
    if exc is None:
        return False
    # An OSError is the intent store (e.g. S3) hiccupping; the next attempt reconciles first.
    return _is_transient(exc) or (isinstance(exc, OSError) and not isinstance(exc, StableStudioError))


def _retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    exc = _exception_of(state)
    if exc is None:
        return False
    server_error = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500
    return _is_transient(exc) or server_error


@task(
    name="upload-image",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_before_payment,
)
async def upload_image(
    wallet: WalletRef,
    source: str | bytes | InputImage,
    *,
    filename: str | None = None,
    storage_options: StorageOptions | None = None,
) -> UploadedImage:
    """Upload an image (local path, fsspec URL such as s3://bucket/key, or bytes) and return its blob URL.

    Costs one upload fee ($0.01). Retried only when it failed before anything was signed. The file is
    streamed, never held whole. `source` may also be an `InputImage` from `read_input` (not read again).

    Raises:
        UploadFailedAfterPaying: the upload failed after paying, or perhaps paying; the payments (nonce,
            amount, settled or unknown) are listed on it and logged at WARNING.
        InvalidRequest: not an image, or over the size limit (nothing paid).

    Example:
        ```python
        image = await upload_image("my-wallet", "s3://photos/cat.png", storage_options={"profile": "prod"})
        ```
    """
    block = await load_wallet(wallet)
    if isinstance(source, InputImage):
        image = source
    else:
        image = await read_input(source, storage_options, name=filename or "")
    log = PaymentLog()
    async with block.get_client(hooks=log) as client:
        try:
            result = await client.upload_detailed(
                image.source,
                filename=filename or image.filename,
                content_type=image.content_type,
                storage_options=storage_options,
            )
        except Exception as exc:
            if client.stats.payments_signed == 0 and _is_transient(exc):
                raise FailedBeforePayment(f"upload failed before paying: {exc}") from exc
            owed = log.unreconciled("upload", exc)
            if owed:
                raise UploadFailedAfterPaying.listing(image.uri, owed, exc) from exc
            raise
    cost = sum(p.amount for p in result.payments)
    get_run_logger().info("uploaded %s (%d bytes) for $%s", image.uri[:200], result.size, to_dollars(cost))
    return UploadedImage(uri=image.uri, sha256=image.sha256, blob_url=result.blob_url, cost=cost)


@task(
    name="submit-edit",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_submit,
)
async def submit_edit(
    wallet: WalletRef,
    request: EditRequest,
    idempotency_key: str,
    *,
    intent_store: IntentStore | str | None = None,
) -> PaidJob:
    """Pay for and submit an edit, at most once per idempotency key.

    Reconciles first: a job recorded under the key is returned as is; a payment signed earlier (a crash, a
    lost reply, an unknown outcome) is re-sent, never signed anew. Otherwise the payment is persisted before
    it is sent, and the job id before this task returns.

    Raises:
        SpendCapExceeded / PolicyRefused: refused before signing (nothing paid).
        PaymentRejected: the server refused the payment (no money moved).
        PaymentOutcomeUnknown: money may have moved; the intent is recorded as "unknown" and a rerun re-sends
            the same authorization to settle the question.

    Example:
        ```python
        job = await submit_edit("my-wallet", EditRequest(prompt="snow", images=[blob_url]), key)
        ```
    """
    logger = get_run_logger()
    block = await load_wallet(wallet)
    store = intent_store if isinstance(intent_store, IntentStore) else IntentStore(intent_store)
    fresh = PaymentIntent(key=idempotency_key, wallet=block.public_address)
    intent = await store.get(idempotency_key) or fresh
    if intent.job_id is not None:
        logger.info("job %s already paid for under this key: resuming it", intent.job_id)
        return PaidJob(
            job_id=intent.job_id, idempotency_key=idempotency_key, payment=intent.payment,
            transaction=intent.transaction,
        )
    resend = intent.payment if intent.status in ("signed", "unknown", "submitted") else None
    if resend is not None and intent.request is not None:
        request = EditRequest(**intent.request)  # the body this payment was signed for
        logger.warning("re-sending the payment signed earlier (nonce %s), not signing anew", resend.nonce)
    else:
        # A refused payment is dropped, but its terms stay pinned: the next signature must match them.
        pinned = intent.pinned or (PaymentTerms.of(intent.payment) if intent.payment else None)
        intent = await store.put(
            intent.model_copy(
                update={"request": request.body(), "status": "new", "payment": None, "pinned": pinned}
            )
        )
    hooks = IntentHooks(store, intent)
    async with block.get_client(hooks=hooks) as client:
        job = await client.submit_edit(request, payment=resend, idempotency_key=idempotency_key)
    transaction = job.settlement.transaction if job.settlement else hooks.intent.transaction
    await store.put(
        hooks.intent.model_copy(
            update={"status": "submitted", "job_id": job.job_id, "transaction": transaction or None}
        )
    )
    paid_now = resend is None
    amount = job.payment.amount_usd if job.payment else 0
    logger.info("job %s submitted (%s $%s)", job.job_id, "paid" if paid_now else "paid earlier", amount)
    return PaidJob(
        job_id=job.job_id, idempotency_key=idempotency_key, payment=job.payment or resend,
        transaction=transaction or None, paid_now=paid_now,
    )


@task(
    name="wait-for-job",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=_retry_transient,
)
async def wait_for_job(
    wallet: WalletRef,
    job_id: str,
    *,
    max_wait_seconds: float = 600.0,
    expected_seconds: float = 5.0,
    report_progress: bool = True,
) -> JobResult:
    """Poll a job until it completes; log (and, optionally, show as a progress artifact) its progress.

    Never cached: a cached status would freeze the loop. Polling is free (Sign-In-With-X, no payment).

    Raises:
        JobFailed: the job failed. JobNotFound: unknown, or another wallet's. JobTimeout: past the deadline.

    Example:
        ```python
        result = await wait_for_job("my-wallet", job.job_id, max_wait_seconds=120)
        ```
    """
    logger = get_run_logger()
    block = await load_wallet(wallet)
    artifact_id: Any = None
    last: list[tuple[str, float | None]] = []

    async def on_progress(job: Job) -> None:
        nonlocal artifact_id
        seen = (job.status, job.progress)
        if last and last[-1] == seen:
            return
        last.append(seen)
        logger.info("job %s: %s%s", job.job_id, job.status, f" {job.progress:g}%" if job.progress else "")
        if not report_progress:
            return
        percent = 100.0 if job.status == "complete" else float(job.progress or 0)
        try:
            if artifact_id is None:
                artifact_id = await acreate_progress_artifact(percent, description=f"job {job_id}")
            else:
                await aupdate_progress_artifact(artifact_id, percent)
        except Exception as exc:  # reporting never fails the wait
            logger.warning("progress artifact not updated: %s", exc)

    async with block.get_client() as client:
        return await client.wait_for_job(
            job_id, timeout=max_wait_seconds, expected_seconds=expected_seconds, on_progress=on_progress
        )


@task(
    name="save-result",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_transient,
)
async def save_result(
    image_url: str,
    destination: str,
    *,
    storage_options: StorageOptions | None = None,
    download_timeout: float = 60.0,
) -> SavedResult:
    """Download a result at once (its URL expires in about 20 minutes) and write it to `destination`.

    `destination` is a full file path or fsspec URL (s3://bucket/key.png); local parents are created. Returns
    the URI and the sha256 of the bytes written.

    Example:
        ```python
        saved = await save_result(result.image_url, "s3://edits/cat.png")
        print(saved.uri, saved.sha256)
        ```
    """
    if not image_url.startswith(("https://", "http://")):
        raise ValueError("result URL must be http(s)")
    # The shared TLS context: building one per download parsed the CA bundle again (~20 ms of CPU per edit).
    async with httpx.AsyncClient(
        verify=tls_context(), timeout=download_timeout, follow_redirects=True
    ) as http:
        response = await http.get(image_url)
        response.raise_for_status()
        data = response.content
    await write_bytes(data, destination, storage_options)
    digest = sha256_hex(data)
    get_run_logger().info("saved %d bytes to %s (sha256 %s)", len(data), destination, digest[:12])
    header_type = response.headers.get("content-type", "").split(";", 1)[0]
    return SavedResult(
        uri=destination, sha256=digest, size=len(data), content_type=header_type or content_type_for(data)
    )
