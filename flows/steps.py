"""The steps of a paid job as plain async functions: submit (paid), wait, save; and the clients they run on.

The upload step is in `flows/uploads.py` beside its records. The public tasks in `flows/tasks.py` wrap each
step with a client of its own; a paid job (`flows/paid_job.py`) runs them all on one client shared by the
jobs of a task run (a Prefect task run and a connection pool each cost CPU, bench/). Both paths run this code,
so the money rules live in one place. Each step takes `clients`, a `StepClients`: `clients(record, inputs)`
opens a client whose payments go through a `PaymentGuard` (`blocks/payment_guard.py`: caps, then `record`,
then receipts, in the order written there).

Steps log what they do at `STEP_LOG_LEVEL` (INFO by default); batches lower it to DEBUG and log one line per
edit instead, so a night of thousands of edits does not send six log records per edit to Prefect's API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import httpx
from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from pydantic import BaseModel, ConfigDict

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.budget import current_flow_run_id
from prefect_stablestudio.blocks.payment_guard import PaymentGuard
from prefect_stablestudio.client import tls_context
from prefect_stablestudio.client.downloads import ResultMedia, ResultStream, open_result
from prefect_stablestudio.client.models import EditRequest, Job, JobResult
from prefect_stablestudio.client.payment import Payment, PaymentHooks
from prefect_stablestudio.client.studio import StableStudioClient
from prefect_stablestudio.flows.intents import IntentHooks, IntentStore, PaymentIntent, PaymentTerms
from prefect_stablestudio.flows.models import SavedResult
from prefect_stablestudio.flows.receipts import PaymentRecorder, ReceiptBook, reporting
from prefect_stablestudio.flows.result_files import write_chunks
from prefect_stablestudio.flows.storage import StorageOptions


class StepClients(Protocol):
    """`clients(record, inputs)`: a client (in `async with`) whose payments go through a `PaymentGuard`
    with the step's `record` (its steps 2, 3 and 6; None for a step that pays nothing) and receipts naming
    `inputs`."""

    def __call__(
        self, record: PaymentHooks | None, inputs: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[StableStudioClient]: ...


STEP_LOG_LEVEL: ContextVar[int] = ContextVar("stablestudio_step_log_level", default=logging.INFO)
"""The level of the steps' progress lines (uploaded, submitted, job status, saved); warnings stay warnings."""

WalletRef = str | StableStudioWallet
"""A saved block's name, or a block instance."""


async def load_wallet(wallet: WalletRef) -> StableStudioWallet:
    """The wallet block itself, loading it by name when given a string."""
    if isinstance(wallet, StableStudioWallet):
        return wallet
    return await StableStudioWallet.aload(wallet)


class PaidJob(BaseModel):
    """A submitted, paid job and the payment that bought it."""

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


def _guard(
    wallet: StableStudioWallet, book: ReceiptBook, record: PaymentHooks | None, inputs: Sequence[str]
) -> PaymentGuard:
    """The hooks of every payment a step makes: caps, then `record`, then the receipt (`PaymentGuard`)."""
    return PaymentGuard(
        wallet.budget(current_flow_run_id()), record=record,
        report=PaymentRecorder(wallet, book, None, inputs=inputs),
    )


def client_per_step(wallet: StableStudioWallet, receipts: ReceiptBook | None = None) -> StepClients:
    """`StepClients` that open (and close) a new client of `wallet` per step.

    Every payment gets a receipt in `receipts` (default: the book beside the default intent store) and an
    event; refusals and failed paid jobs get an event (`receipts.reporting`).

    Example:
        ```python
        blob = await upload(client_per_step(wallet), image)
        ```
    """
    book = receipts or ReceiptBook()

    def clients(
        record: PaymentHooks | None, inputs: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[StableStudioClient]:
        guard = _guard(wallet, book, record, inputs)
        return reporting(wallet, wallet.get_client(hooks=guard, enforce_budget=False))

    return clients


@asynccontextmanager
async def one_client_for_steps(
    wallet: StableStudioWallet, receipts: ReceiptBook | None = None
) -> AsyncIterator[StepClients]:
    """One client (one pool) for many steps: yields `StepClients` lending it with each step's own guard.

    Steps of concurrent jobs share the pool, the session and what the client learnt; each step's client is
    a view with its own `PaymentGuard` (`StableStudioClient.with_hooks`), so one job's payment is never
    persisted under another job's record. Receipts and events as in `client_per_step`.

    Example:
        ```python
        async with one_client_for_steps(wallet) as clients:
            image = await upload(clients, image)
        ```
    """
    book = receipts or ReceiptBook()
    budget = wallet.budget(current_flow_run_id())
    # The shared client itself pays nothing: every payment goes through a step's view and its guard.
    async with wallet.get_client(enforce_budget=False) as client:

        @asynccontextmanager
        async def view(guard: PaymentGuard) -> AsyncIterator[StableStudioClient]:
            yield client.with_hooks(guard)

        def clients(
            record: PaymentHooks | None, inputs: Sequence[str] = ()
        ) -> AbstractAsyncContextManager[StableStudioClient]:
            report = PaymentRecorder(wallet, book, None, inputs=inputs)
            return reporting(wallet, view(PaymentGuard(budget, record=record, report=report)))

        yield clients


async def submit(
    clients: StepClients,
    wallet: StableStudioWallet,
    request: EditRequest,
    idempotency_key: str,
    store: IntentStore,
    *,
    known: PaymentIntent | None = None,
) -> PaidJob:
    """Pay for and submit a Flux 2 Pro edit at most once per key; see `tasks.submit_edit`.

    Example:
        ```python
        request = EditRequest(prompt="snow", images=[url])
        job = await submit(client_per_step(wallet), wallet, request, key, store)
        ```
    """
    return await submit_route(
        clients, wallet, "flux-2-pro", "edit", request.body(), idempotency_key, store, known=known
    )


async def submit_route(
    clients: StepClients,
    wallet: StableStudioWallet,
    model: str,
    operation: str,
    body: dict[str, Any],
    idempotency_key: str,
    store: IntentStore,
    *,
    known: PaymentIntent | None = None,
) -> PaidJob:
    """Pay for and submit any generate route at most once per key: the one reconcile-then-pay step.

    A job recorded under the key is returned as is; a payment signed earlier (a crash, a lost reply, an
    unknown outcome) is re-sent with the body it was signed for, never signed anew. Otherwise the payment is
    persisted with its body before it is sent (the intent hooks), and the job id with the settlement before
    this returns. `known` is the key's record when the caller has just read or written it (saves a read).

    Example:
        ```python
        body = build_request("grok", "generate", {"prompt": "a lighthouse"}).body()
        job = await submit_route(client_per_step(wallet), wallet, "grok", "generate", body, key, store)
        ```
    """
    logger = get_run_logger()
    fresh = PaymentIntent(key=idempotency_key, wallet=wallet.public_address)
    intent = known or await store.get(idempotency_key) or fresh
    if intent.job_id is not None:
        logger.info("job %s already paid for under this key: resuming it", intent.job_id)
        return PaidJob(
            job_id=intent.job_id, idempotency_key=idempotency_key, payment=intent.payment,
            transaction=intent.transaction,
        )
    resend = intent.payment if intent.status in ("signed", "unknown", "submitted") else None
    if resend is not None and intent.request is not None:
        body = intent.request  # the body this payment was signed for
        logger.warning("re-sending the payment signed earlier (nonce %s), not signing anew", resend.nonce)
    else:
        # A refused payment is dropped, but its terms stay pinned: the next signature must match them. Not
        # written yet: the signed record (written before sending) carries the body; until then nothing moved.
        pinned = intent.pinned or (PaymentTerms.of(intent.payment) if intent.payment else None)
        update = {"request": body, "status": "new", "payment": None, "pinned": pinned}
        intent = intent.model_copy(update=update)
    hooks = IntentHooks(store, intent, defer_settled=True)
    try:
        inputs = [rec["uri"] for rec in intent.inputs if rec.get("uri")] or _image_urls(body)
        async with clients(hooks, inputs) as client:
            job = await client.submit_generation(
                model, operation, body, payment=resend, idempotency_key=idempotency_key
            )
    except BaseException:
        try:
            await hooks.flush()  # a settled payment is on record before the error goes on
        except Exception as flush_error:  # the signed record stands; say so, and raise the original error
            logger.warning("settlement of job payment not recorded: %s", flush_error)
        raise
    transaction = job.settlement.transaction if job.settlement else hooks.intent.transaction
    await store.put(
        hooks.intent.model_copy(
            update={"status": "submitted", "job_id": job.job_id, "transaction": transaction or None}
        )
    )
    # A re-sent payment the chain showed expired unused was replaced by a new signature: paid now.
    paid_now = resend is None or (job.payment is not None and job.payment.nonce != resend.nonce)
    amount = job.payment.amount_usd if job.payment else 0
    logger.log(
        STEP_LOG_LEVEL.get(),
        "%s/%s job %s submitted (%s $%s)",
        model, operation, job.job_id, "paid" if paid_now else "paid earlier", amount,
    )
    return PaidJob(
        job_id=job.job_id, idempotency_key=idempotency_key, payment=job.payment or resend,
        transaction=transaction or None, paid_now=paid_now,
    )


def _image_urls(body: dict[str, Any]) -> list[str]:
    images = body.get("images") or body.get("image_urls") or []
    return [str(i) for i in images] if isinstance(images, list) else []


async def wait(
    clients: StepClients,
    job_id: str,
    *,
    max_wait_seconds: float = 600.0,
    expected_seconds: float = 5.0,
    report_progress: bool = True,
) -> JobResult:
    """Poll a job until it completes, logging its progress; see `tasks.wait_for_job`.

    Example:
        ```python
        result = await wait(client_per_step(wallet), job.job_id, report_progress=False)
        ```
    """
    logger = get_run_logger()
    artifact_id: Any = None
    last: list[tuple[str, float | None]] = []

    async def on_progress(job: Job) -> None:
        nonlocal artifact_id
        seen = (job.status, job.progress)
        if last and last[-1] == seen:
            return
        last.append(seen)
        logger.log(
            STEP_LOG_LEVEL.get(), "job %s: %s%s", job.job_id, job.status,
            f" {job.progress:g}%" if job.progress else "",
        )
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

    async with clients(None) as client:
        return await client.wait_for_job(
            job_id, timeout=max_wait_seconds, expected_seconds=expected_seconds, on_progress=on_progress
        )


@asynccontextmanager
async def open_download(
    url: str,
    *,
    media: ResultMedia = "image",
    max_bytes: int | None = None,
    download_timeout: float = 60.0,
    clients: StepClients | None = None,
) -> AsyncIterator[ResultStream]:
    """Open a result URL (they expire: at once) as a bounded, checked stream; see `open_result`.

    With `clients`, the download goes through that client's connection pool and its wallet's limits;
    otherwise through a short-lived HTTP client of its own and the default limits. `max_bytes` overrides
    the limit for `media`. No credentials are sent.

    Example:
        ```python
        async with open_download(result.image_url) as result:
            written = await write_chunks(result.chunks(), "s3://edits/cat.png")
        ```
    """
    if clients is not None:
        async with clients(None) as client:
            async with client.stream_download(url, media=media, max_bytes=max_bytes) as result:
                yield result
        return
    # The shared TLS context: building one per download parsed the CA bundle again (~20 ms of CPU).
    async with httpx.AsyncClient(verify=tls_context(), timeout=download_timeout) as http:
        async with open_result(http, url, media=media, max_bytes=max_bytes) as result:
            yield result


async def save(
    url: str,
    destination: str | Callable[[str], str],
    *,
    storage_options: StorageOptions | None = None,
    download_timeout: float = 60.0,
    clients: StepClients | None = None,
    media: ResultMedia = "image",
    max_bytes: int | None = None,
) -> SavedResult:
    """Stream a result at once into `destination`, hashing it on the way; see `tasks.save_result`.

    The body never sits whole in memory; it is written under a temporary name and committed whole, or not
    at all (see `result_files`). `destination` may be a function of the sniffed content type (e.g. to pick
    the extension). Limits and checks: `open_download`.

    Example:
        ```python
        saved = await save(result.image_url, "s3://edits/cat.png")
        ```
    """
    async with open_download(
        url, media=media, max_bytes=max_bytes, download_timeout=download_timeout, clients=clients
    ) as result:
        target = destination(result.content_type) if callable(destination) else destination
        written = await write_chunks(result.chunks(), target, storage_options)
    get_run_logger().log(
        STEP_LOG_LEVEL.get(), "saved %d bytes (%s) to %s (sha256 %s)",
        written.size, result.content_type, target, written.sha256[:12],
    )
    return SavedResult(uri=target, sha256=written.sha256, size=written.size, content_type=result.content_type)
