"""`StableStudioClient`: upload, pay for an edit, wait for it, download it. Async, one HTTP pool per client.

Example:
    ```python
    from prefect_stablestudio.client import EditRequest, StableStudioClient

    async with StableStudioClient(private_key) as client:
        blob_url = await client.upload("photo.png")          # also bytes, or s3://bucket/key.png
        job = await client.submit_edit(EditRequest(prompt="make it snow", images=[blob_url]))
        result = await client.wait_for_job(job.job_id)
        image = await client.download(result.image_url)
    ```
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from prefect_stablestudio.client._http import (
    BoundedTransport,
    ClientStats,
    check_url,
    excerpt,
    raise_for_status,
    tls_context,
)
from prefect_stablestudio.client.blob_api import probe_blob_api
from prefect_stablestudio.client.catalog import CATALOG, GenerationBody
from prefect_stablestudio.client.downloads import (
    MAX_IMAGE_RESULT_BYTES,
    MAX_VIDEO_RESULT_BYTES,
    ResultMedia,
    ResultStream,
    open_result,
)
from prefect_stablestudio.client.errors import (
    JobFailed,
    JobNotFound,
    JobTimeout,
    ProtocolError,
    RateLimited,
    StableStudioError,
    UntrustedServerValue,
    UpstreamError,
)
from prefect_stablestudio.client.keys import load_signer
from prefect_stablestudio.client.models import (
    EditRequest,
    Job,
    JobResult,
    SubmittedJob,
    UploadResult,
    UploadTicket,
)
from prefect_stablestudio.client.paying import PaidCall, PaidResponse
from prefect_stablestudio.client.payment import NoHooks, Payment, PaymentHooks
from prefect_stablestudio.client.policy import WalletPolicy
from prefect_stablestudio.client.polling import PollSchedule, TurnaroundHistory
from prefect_stablestudio.client.server_values import check_job_id, check_result_url
from prefect_stablestudio.client.session import Session, SiwxMode
from prefect_stablestudio.client.sources import ImageSource, open_source
from prefect_stablestudio.client.uploads import TicketCallback, upload_opened
from prefect_stablestudio.client.x402 import Quote

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_BLOB_API_URL", "StableStudioClient"]

DEFAULT_BASE_URL = "https://stablestudio.dev"
DEFAULT_BLOB_API_URL = "https://vercel.com/api/blob"
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024
# Jobs created this long before the payment was signed cannot be what it bought (allows for clock skew).
RESUME_SKEW = timedelta(seconds=60)
# How many of the wallet's newest jobs a resume searches (the API has no paging; 100 is the most it lists).
# A busy wallet scrolls a job out of the default 20 within seconds: the soak lost track of paid jobs so.
RESUME_LIST_LIMIT = 100

ProgressCallback = Callable[[Job], Awaitable[None] | None]
logger = logging.getLogger(__name__)


NOT_FOUND_GRACE_SECONDS = 10.0
"""How long after `wait_for_job` starts a 404 (before the job was ever seen) is retried, not final."""

KEEPALIVE_SECONDS = 4.0
"""How long an idle pooled connection is kept: below the 5 s after which common servers close theirs."""


class StableStudioClient:
    """An async StableStudio client for one wallet. Use it with `async with` (or call `aclose()`).

    Args:
        private_key: 0x-hex key (str or SecretStr); default `$STABLESTUDIO_PRIVATE_KEY`. Held privately.
        base_url: API origin; default `$STABLESTUDIO_BASE_URL` or https://stablestudio.dev (HTTPS unless
            loopback).
        policy: what the wallet may sign; default `WalletPolicy()` (Base USDC, at most $1 per call).
        hooks: payment hooks (budget, persistence); default none.
        blob_api_url: blob API for uploads; default `$STABLESTUDIO_BLOB_API_URL` or https://vercel.com/api/blob.
        timeout: seconds per HTTP request.
        max_connections: connection pool size. Requests are small and quick, so a few connections carry
            hundreds of edits; httpcore's pool costs CPU quadratic in its idle connections (bench/: 100
            edits at once took 54 ms of CPU each with 100 connections, 13 ms with 20).
        siwx_mode: "auto" (own nonce first, challenge if refused), "client_nonce" or "challenge".
        max_upload_bytes: uploads larger than this are refused before paying.
        resend_attempts: extra sends of the same signed header after an ambiguous failure.
        resend_backoff: seconds before the first re-send (grows linearly).
        tempo_rpc_url: Tempo RPC asked before signing an MPP charge (`policy.payment_method` "mpp" or
            "auto"); default `$STABLESTUDIO_TEMPO_RPC_URL` or https://rpc.tempo.xyz.
        base_rpc_url: Base JSON-RPC node asked (read only) when a payment's outcome is ambiguous: its
            EIP-3009 `authorizationState` says whether the money moved, and an authorization unused after
            its `validBefore` is replaced by a new one. Default `$STABLESTUDIO_BASE_RPC_URL`; without
            one, a lost reply is resolved from the server alone (the job list).
        max_image_result_bytes: downloads of image results stop with `ResultTooLarge` past this (64 MiB).
        max_video_result_bytes: the same for video results (2 GiB).
    """

    def __init__(
        self,
        private_key: str | SecretStr | None = None,
        *,
        base_url: str | None = None,
        policy: WalletPolicy | None = None,
        hooks: PaymentHooks | None = None,
        blob_api_url: str | None = None,
        timeout: float = 30.0,
        max_connections: int = 20,
        siwx_mode: SiwxMode = "auto",
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        resend_attempts: int = 2,
        resend_backoff: float = 0.5,
        tempo_rpc_url: str | None = None,
        base_rpc_url: str | None = None,
        max_image_result_bytes: int = MAX_IMAGE_RESULT_BYTES,
        max_video_result_bytes: int = MAX_VIDEO_RESULT_BYTES,
    ) -> None:
        self._signer = load_signer(private_key)
        self.base_url = check_url(
            (base_url or os.environ.get("STABLESTUDIO_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"), "base_url"
        )
        self.blob_api_url = check_url(
            (blob_api_url or os.environ.get("STABLESTUDIO_BLOB_API_URL") or DEFAULT_BLOB_API_URL).rstrip("/"),
            "blob_api_url",
        )
        if siwx_mode not in ("auto", "client_nonce", "challenge"):
            raise ValueError(f"siwx_mode must be auto, client_nonce or challenge, not {siwx_mode!r}")
        self.policy = policy or WalletPolicy()
        self.hooks: PaymentHooks = hooks or NoHooks()
        self.max_upload_bytes = max_upload_bytes
        self.max_result_bytes: dict[ResultMedia, int] = {
            "image": max_image_result_bytes,
            "video": max_video_result_bytes,
        }
        self.stats = ClientStats()
        self._timeout = timeout
        self._blob_api_reachable = asyncio.Event()  # set once probed, before this client's first paid upload
        self._blob_api_probe = asyncio.Lock()  # 100 first uploads at once send one probe, not 100
        self._max_connections = max_connections
        # Turnarounds of this client's finished jobs, per expected turnaround (a proxy for the model).
        self._turnarounds: dict[float, TurnaroundHistory] = {}
        self._session = Session(self.base_url, self._signer, None, siwx_mode, self.stats)
        self._paid_call = PaidCall(
            self._session,
            self.policy,
            self.hooks,
            resend_attempts=resend_attempts,
            resend_backoff=resend_backoff,
            tempo_rpc_url=tempo_rpc_url,
            base_rpc_url=_optional_url(
                base_rpc_url or os.environ.get("STABLESTUDIO_BASE_RPC_URL"), "base_rpc_url"
            ),
        )

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> StableStudioClient:
        self._ensure_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Using the client again opens a new one."""
        http, self._session.http = self._session.http, None
        if http is not None:
            await http.aclose()

    def _ensure_open(self) -> tuple[Session, PaidCall]:
        if self._session.http is None:
            pool = httpx.AsyncHTTPTransport(
                verify=tls_context(),
                # Idle connections go after 4 s, before the server drops them: Node's and uvicorn's servers
                # close them after 5 s, and a request sent on one as it closes is lost (httpx: 5 s).
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                    keepalive_expiry=KEEPALIVE_SECONDS,
                ),
            )
            self._session.http = httpx.AsyncClient(
                transport=BoundedTransport(pool, self._max_connections),
                timeout=httpx.Timeout(self._timeout, connect=min(10.0, self._timeout)),
                follow_redirects=False,
                headers={"user-agent": "stablestudio-python"},
            )
        return self._session, self._paid_call

    def with_hooks(self, hooks: PaymentHooks | None) -> StableStudioClient:
        """This client with other payment hooks: the same connection pool, session, statistics and what it
        has learnt (turnarounds, the blob API probe), for concurrent callers that each keep their own record
        of what they pay. Open and close the original (`async with`); a view is never closed on its own.

        Example:
            ```python
            async with StableStudioClient(key) as client:
                job = await client.with_hooks(my_hooks).submit_edit(request)
            ```
        """
        view = copy.copy(self)
        view.hooks = hooks or NoHooks()
        view._paid_call = copy.copy(self._paid_call)
        view._paid_call.hooks = view.hooks
        return view

    # -- identity --------------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The wallet address (checksummed)."""
        return self._signer.address

    @property
    def siwx_mode_in_use(self) -> Literal["client_nonce", "challenge"]:
        """How polls authenticate now: "client_nonce" (1 request) or "challenge" (2 requests)."""
        return self._session.siwx_in_use

    def __repr__(self) -> str:
        return f"StableStudioClient(address={self.address!r}, base_url={self.base_url!r})"

    __str__ = __repr__

    # -- paying ----------------------------------------------------------------------------------------------

    async def paid_post(
        self,
        path: str,
        body: Any,
        *,
        kind: str = "generate",
        payment: Payment | None = None,
        idempotency_key: str | None = None,
    ) -> PaidResponse:
        """POST `body` to a paid route (quote, policy, hooks, sign, send). The building block of submits.

        With `payment=`, re-send that signed payment instead of signing: the way to resume a call whose
        outcome was unknown. Never wrap this in a generic retry.
        """
        _, paid_call = self._ensure_open()
        find = self._find_job_for if path.startswith("/api/generate/") else None
        return await paid_call.post(
            kind, path, body, payment=payment, idempotency_key=idempotency_key, find_existing=find
        )

    async def quote_post(self, path: str, body: Any, *, kind: str = "generate") -> Quote | None:
        """The price a paid route asks for `body`, read from its 402; nothing is signed or paid.

        Returns None when the route did not ask for payment. The policy checks the offers as it would before
        paying, so a quote the wallet would refuse raises `PolicyRefused` here too.

        Example:
            ```python
            quote = await client.quote_post("/api/upload", {"filename": "a.png", "contentType": "image/png",
                                                             "size": 1234})
            print(quote.amount_usd if quote else "free")
            ```
        """
        _, paid_call = self._ensure_open()
        return await paid_call.quote(kind, path, body)

    async def quote_upload(self, filename: str, content_type: str, size: int) -> Quote | None:
        """The price of uploading a file of this name, type and size (its ticket's 402); nothing is paid."""
        body = {"filename": filename, "contentType": content_type, "size": size}
        return await self.quote_post("/api/upload", body, kind="upload")

    async def quote_edit(self, request: EditRequest) -> Quote | None:
        """The price of a Flux 2 Pro edit (its 402); nothing is paid. Its image URLs must be uploaded ones."""
        return await self.quote_generation("flux-2-pro", "edit", request.body())

    async def quote_generation(self, model: str, operation: str, body: dict[str, Any]) -> Quote | None:
        """The price of any `POST /api/generate/{model}/{operation}` body (its 402); nothing is paid."""
        path = f"/api/generate/{quote(model, safe='')}/{quote(operation, safe='')}"
        return await self.quote_post(path, body)

    async def submit_generation(
        self,
        model: str,
        operation: str,
        body: dict[str, Any],
        *,
        payment: Payment | None = None,
        idempotency_key: str | None = None,
    ) -> SubmittedJob:
        """Pay for and submit any `POST /api/generate/{model}/{operation}` job.

        A body for a catalog route is checked against its typed request first (`catalog.py`): an invalid one
        (e.g. Veo's input image in `images[]` rather than `image`) raises `InvalidRequest` before any quote.
        A re-sent `payment` is not checked: it is sent with the body it was signed for.

        Raises:
            InvalidRequest, PolicyRefused, PaymentRejected, PaymentOutcomeUnknown: see `paid_post`.
        """
        entry = CATALOG.get((model, operation))
        if entry is not None and payment is None:
            entry.build(body)
        path = f"/api/generate/{quote(model, safe='')}/{quote(operation, safe='')}"
        paid = await self.paid_post(path, body, payment=payment, idempotency_key=idempotency_key)
        data = paid.data if isinstance(paid.data, dict) else {}
        job_id = await self._job_id_of(data, paid, body)
        poll_url = data.get("pollUrl")
        return SubmittedJob(
            job_id=job_id,
            type=data.get("type"),
            status=str(data.get("status") or "pending"),
            # Never fetched by the client (it polls /api/jobs/{id}); kept only when it is a safe URL.
            poll_url=poll_url if _is_safe_url(poll_url) else None,
            payment=paid.payment,
            settlement=paid.settlement,
            resumed=paid.resumed,
        )

    async def _job_id_of(self, data: dict[str, Any], paid: PaidResponse, body: Any) -> str:
        """The job id of a paid submit reply: `jobId`, else `id`, else the one job the payment bought.

        The payment has settled by now and `hooks.after_outcome` recorded it with the reply, so a reply
        without a usable id is a clear error that says so, never a silent loss.
        """
        raw = data.get("jobId", data.get("id"))
        if raw is None and paid.payment is not None:
            try:
                found = await self._find_job_for(paid.payment, body)
            except (StableStudioError, httpx.HTTPError):
                found = None
            raw = found.get("jobId") if found else None
        paid_note = (
            f"; the payment {paid.payment.nonce} settled and is recorded" if paid.payment is not None else ""
        )
        if raw is None:
            raise ProtocolError(f"submit reply has no jobId or id{paid_note}: {str(paid.data)[:200]}")
        try:
            return check_job_id(raw)
        except UntrustedServerValue as exc:
            raise UntrustedServerValue(f"{exc}{paid_note}", field=exc.field) from None

    async def submit_edit(
        self, request: EditRequest, *, payment: Payment | None = None, idempotency_key: str | None = None
    ) -> SubmittedJob:
        """Pay for and submit a Flux 2 Pro edit.

        Example:
            ```python
            job = await client.submit_edit(EditRequest(prompt="make it snow", images=[blob_url]))
            print(job.job_id, job.payment.amount_usd)
            ```
        """
        return await self.submit_generation(
            "flux-2-pro", "edit", request.body(), payment=payment, idempotency_key=idempotency_key
        )

    async def generate(
        self,
        request: GenerationBody,
        *,
        payment: Payment | None = None,
        idempotency_key: str | None = None,
    ) -> SubmittedJob:
        """Pay for and submit a typed generate request (see `catalog.py`); the price is the quote's.

        Example:
            ```python
            job = await client.generate(Veo31Generate(prompt="waves at dusk", duration_seconds="4"))
            entry = catalog_entry("veo-3.1", "generate")
            result = await client.wait_for_job(
                job.job_id, timeout=entry.max_wait_seconds, expected_seconds=entry.expected_seconds
            )
            print(result.video_url, result.thumbnail_url)
            ```
        """
        return await self.submit_generation(
            request.MODEL, request.OPERATION, request.body(), payment=payment, idempotency_key=idempotency_key
        )

    async def _find_job_for(self, payment: Payment, body: Any) -> dict[str, Any] | None:
        """The one job this payment bought (same input, created after signing), as a submit-shaped reply."""
        jobs = await self.list_jobs(limit=RESUME_LIST_LIMIT)
        since = payment.signed_at - RESUME_SKEW
        matches = [j for j in jobs if j.input == body and (j.created_at is None or j.created_at >= since)]
        if len(matches) != 1:
            return None
        job = matches[0]
        return {"jobId": job.job_id, "type": job.type, "status": job.status, "success": True}

    # -- jobs ------------------------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """One job, authenticated with SIWX (never paid).

        Raises:
            UntrustedServerValue: `job_id` is not an opaque id (it could change the URL's path or query).
            JobNotFound: unknown id, or a job another wallet paid for.
            RateLimited, UpstreamError: the server is struggling; safe to retry.
        """
        check_job_id(job_id, "job_id")
        response = await self._siwx("jobs", "GET", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            raise JobNotFound(job_id)
        raise_for_status(response, f"GET /api/jobs/{job_id}")
        try:
            data = response.json()
            if isinstance(data, dict) and not any(k in data for k in ("jobId", "id", "job_id")):
                data = {**data, "jobId": job_id}  # a record that does not repeat its own id
            return Job.model_validate(data)
        except (ValueError, ValidationError):
            raise ProtocolError(f"job reply is malformed: {excerpt(response, 200)}") from None

    async def list_jobs(self, *, limit: int = 20, status: str | None = None) -> list[Job]:
        """This wallet's jobs, newest first (SIWX)."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        response = await self._siwx("jobs", "GET", "/api/jobs", params=params)
        raise_for_status(response, "GET /api/jobs")
        try:
            data = response.json()
            return [Job.model_validate(j) for j in data.get("jobs", [])]
        except (ValueError, ValidationError, AttributeError):
            raise ProtocolError(f"jobs list is malformed: {excerpt(response, 200)}") from None

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - a deadline over many polls, not one awaitable
        expected_seconds: float = 5.0,
        on_progress: ProgressCallback | None = None,
        rng: random.Random | None = None,
        not_found_grace: float = NOT_FOUND_GRACE_SECONDS,
    ) -> JobResult:
        """Poll until the job completes: first near `expected_seconds`, then adaptive (see `PollSchedule`).

        Once a few of this client's jobs with the same `expected_seconds` have finished, the first poll
        comes at the short end of their turnarounds instead (`TurnaroundHistory`): about one poll per job.

        Args:
            job_id: the job.
            timeout: overall deadline in seconds.
            expected_seconds: typical turnaround (Flux 2 Pro edit: ~5 s).
            on_progress: called (sync or async) with every job state seen.
            rng: randomness for jitter (tests pass a seeded one).
            not_found_grace: seconds during which a 404 before the job was ever seen is retried, not final.

        A status outside pending/loading/complete/failed is read as "still running" until the deadline (and
        logged once).

        Raises:
            JobFailed: the job failed. JobNotFound: not found or not yours (after `not_found_grace`).
            JobTimeout: deadline passed. UntrustedServerValue: a result URL is not https (http only on
            loopback) or carries credentials.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        history = self._turnarounds.setdefault(expected_seconds, TurnaroundHistory())
        schedule = PollSchedule(
            expected_seconds=expected_seconds,
            timeout=timeout,
            learned_seconds=history.estimate(),
            rng=rng or random.Random(),
        )
        delay = schedule.first_delay()
        last: Job | None = None
        polls = 0
        predicted: float | None = None
        unknown_logged = False
        while True:
            await asyncio.sleep(delay)
            polls += 1
            try:
                job = await self.get_job(job_id)
            except JobNotFound:
                # Right after a submit the record may not be readable yet (a public monitor saw 404s there).
                if last is not None or loop.time() - start >= min(not_found_grace, timeout):
                    raise
                delay = schedule.next_delay(elapsed=loop.time() - start, progress=None)
            except RateLimited as exc:
                delay = schedule.retry_after_delay(elapsed=loop.time() - start, retry_after=exc.retry_after)
            except UpstreamError as exc:
                if 0 < exc.status < 500:
                    raise
                delay = schedule.next_delay(elapsed=loop.time() - start, progress=None)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
                delay = schedule.after_network_error(elapsed=loop.time() - start)
            else:
                schedule.answered()
                last = job
                if on_progress is not None:
                    outcome = on_progress(job)
                    if inspect.isawaitable(outcome):
                        await outcome
                elapsed = loop.time() - start
                if job.status == "complete":
                    history.add_finished(
                        elapsed, server_seconds=job.server_seconds, predicted=predicted, first_poll=polls == 1
                    )
                    return _job_result(job)
                if job.status == "failed":
                    raise JobFailed(job.job_id, job.error_message, job)
                if not job.known_status and not unknown_logged:
                    unknown_logged = True
                    logger.warning(
                        "job %s has unknown status %r: read as still running", job_id, job.status[:40]
                    )
                if job.progress is not None and 0 < job.progress < 100:
                    predicted = elapsed * 100.0 / job.progress
                delay = schedule.next_delay(elapsed=elapsed, progress=job.progress)
            if loop.time() - start >= timeout:
                raise JobTimeout(job_id, timeout, last)

    async def _siwx(self, kind: str, method: str, path: str, **kw: Any) -> httpx.Response:
        session, _ = self._ensure_open()
        return await session.siwx_request(kind, method, path, **kw)

    # -- upload and download ---------------------------------------------------------------------------------

    async def upload(
        self, source: ImageSource, *, filename: str | None = None, content_type: str | None = None
    ) -> str:
        """Upload an image (path, bytes or fsspec URL) and return its blob URL for `EditRequest.images`.

        Costs $0.01 (one x402 payment). See `upload_detailed` for the payment and the details.
        """
        return (await self.upload_detailed(source, filename=filename, content_type=content_type)).blob_url

    async def upload_detailed(
        self,
        source: ImageSource,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        storage_options: dict[str, Any] | None = None,
        ticket: UploadTicket | None = None,
        on_ticket: TicketCallback | None = None,
    ) -> UploadResult:
        """Upload in three steps: paid ticket, streamed PUT to the blob API, SIWX confirm.

        The type is checked from the first bytes (JPEG, PNG, GIF, WebP) and the size against
        `max_upload_bytes` before anything is paid. A file is streamed, never read whole (one of 64 KiB or
        less is read at once, in the thread that inspects it). If the upload token expires before the bytes
        are up, a new ticket is bought: that is a second $0.01 payment, listed in `UploadResult.payments`
        and flagged by `UploadResult.rebought_because`.

        A paid ticket is spent once: pass `on_ticket` to persist each ticket as it arrives (before its PUT),
        and `ticket` (the persisted one) to retry or rerun the same upload without paying again while the
        token is valid (`UploadTicket.valid_until`, about 5 minutes).

        Args:
            source: a path, bytes, or an fsspec URL (s3://bucket/key.png, memory://x.png, ...).
            filename: name to store; default the source's base name.
            content_type: optional declared type; must match the bytes.
            idempotency_key: derives the x402 payment-identifier when the server supports it.
            storage_options: fsspec options for URL sources (e.g. an S3 endpoint).
            ticket: a ticket paid earlier for this very upload (same bytes and name), to use while valid.
            on_ticket: awaited with each ticket bought (and its payment) before the PUT.

        Raises:
            InvalidRequest: not an allowed image, too large, unreadable, or (once per client, before the
                first upload pays) a blob API whose host cannot be reached (nothing paid).
        """
        _, paid_call = self._ensure_open()
        opened = await open_source(
            source,
            filename=filename,
            content_type=content_type,
            max_bytes=self.max_upload_bytes,
            storage_options=storage_options,
        )
        await self._check_blob_api()
        return await upload_opened(
            paid_call, opened, blob_api_url=self.blob_api_url, idempotency_key=idempotency_key,
            ticket=ticket, on_ticket=on_ticket,
        )

    async def _check_blob_api(self) -> None:
        """Probe the blob API once per client, before its first upload pays (see `blob_api`)."""
        if self._blob_api_reachable.is_set():
            return
        async with self._blob_api_probe:
            if self._blob_api_reachable.is_set():
                return
            session, _ = self._ensure_open()
            assert session.http is not None
            self.stats.requests["blob_probe"] += 1
            await probe_blob_api(session.http, self.blob_api_url)
            self._blob_api_reachable.set()

    @asynccontextmanager
    async def stream_download(
        self, url: str, *, media: ResultMedia = "image", max_bytes: int | None = None
    ) -> AsyncIterator[ResultStream]:
        """Open a result URL as a bounded stream of chunks (results expire after ~20 min: fetch at once).

        The Content-Length and then the bytes received are held to `max_bytes` (default: this client's
        limit for `media`), and the first bytes must be an image (or, for "video", a video or a GIF). No
        credentials are sent; redirects are followed, each hop checked.

        Example:
            ```python
            async with client.stream_download(result.video_url, media="video") as result:
                async for chunk in result.chunks():
                    out.write(chunk)
            ```

        Raises:
            ResultTooLarge: over the limit (announced, or at most one chunk past it while reading).
            UnexpectedMediaType: the first bytes are not the expected media.
            UpstreamError: e.g. 410 when the URL expired.
        """
        session, _ = self._ensure_open()
        self.stats.requests["download"] += 1
        assert session.http is not None
        limit = self.max_result_bytes[media] if max_bytes is None else max_bytes
        async with open_result(session.http, url, media=media, max_bytes=limit) as result:
            yield result

    async def download(
        self, url: str, *, media: ResultMedia = "image", max_bytes: int | None = None
    ) -> bytes:
        """A small result's bytes, with the limits and checks of `stream_download` (prefer that for videos).

        Raises:
            ResultTooLarge, UnexpectedMediaType, UpstreamError: see `stream_download`.
        """
        async with self.stream_download(url, media=media, max_bytes=max_bytes) as result:
            return b"".join([chunk async for chunk in result.chunks()])


def _optional_url(url: str | None, what: str) -> str | None:
    """`url` checked like every other (https, or http on loopback); None when empty."""
    return check_url(url, what) if url else None


def _is_safe_url(value: object) -> bool:
    try:
        check_result_url(value)
    except UntrustedServerValue:
        return False
    return True


def _job_result(job: Job) -> JobResult:
    """A complete job's result, its URLs checked before anyone fetches or shows them."""
    urls = job.result
    checked = {
        name: check_result_url(value, alias) if value is not None else None
        for name, alias, value in (
            ("image_url", "imageUrl", urls.image_url if urls else None),
            ("video_url", "videoUrl", urls.video_url if urls else None),
            ("thumbnail_url", "thumbnailUrl", urls.thumbnail_url if urls else None),
        )
    }
    return JobResult(job_id=job.job_id, job=job, **checked)
