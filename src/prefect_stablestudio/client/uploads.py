"""The three-step upload: paid ticket, streamed PUT to the blob API, SIWX confirm."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

import httpx
from pydantic import ValidationError

from prefect_stablestudio.client._http import (
    check_url,
    error_code,
    excerpt,
    raise_for_status,
    refuse_redirect,
    retry_after_seconds,
)
from prefect_stablestudio.client.errors import ProtocolError, StableStudioError, UpstreamError
from prefect_stablestudio.client.models import BlobInfo, UploadResult, UploadTicket
from prefect_stablestudio.client.paying import PaidCall
from prefect_stablestudio.client.payment import Payment
from prefect_stablestudio.client.sources import OpenedSource

__all__ = ["TicketCallback", "upload_opened", "usable"]

BLOB_API_VERSION = "12"
# A ticket this close to expiry is not worth starting a PUT with.
_TICKET_MARGIN = timedelta(seconds=3)
_PUT_ATTEMPTS = 5
_PUT_BACKOFF = 0.5
_PUT_TRANSIENT = ("rate_limited", "service_unavailable")
_CONFIRM_ATTEMPTS = 4
# Refusals of a kept ticket's token (a fresh ticket refused so is an error: buying again would not help).
_TOKEN_REFUSALS = ("forbidden", "client_token_pathname_mismatch")
_CONFIRM_BACKOFF = 0.5


TicketCallback = Callable[[UploadTicket, Payment | None], Awaitable[None]]
"""`on_ticket(ticket, payment)`: called as soon as a paid ticket arrives, before its PUT (to persist it)."""
_MAX_TICKETS_BOUGHT = 2


class _TicketRefused(Exception):
    """The blob API refused the ticket's token (expired, or not valid for this PUT)."""

    def __init__(self, reason: Literal["expired", "refused"]) -> None:
        super().__init__(reason)
        self.reason: Literal["expired", "refused"] = reason


def usable(ticket: UploadTicket) -> bool:
    """True while a PUT with `ticket` can still start (its token valid for a few more seconds); a ticket
    whose expiry cannot be read is tried (the blob API refuses it if it expired, and one more is bought)."""
    until = ticket.valid_until
    return until is None or until - _TICKET_MARGIN > datetime.now(UTC)


async def upload_opened(
    paid_call: PaidCall,
    opened: OpenedSource,
    *,
    blob_api_url: str,
    idempotency_key: str | None = None,
    ticket: UploadTicket | None = None,
    on_ticket: TicketCallback | None = None,
) -> UploadResult:
    """Run the three steps for a checked source. See `StableStudioClient.upload_detailed`.

    `ticket`, one paid earlier for this upload, is used while it is valid; a new one is bought (at most two
    per call) only when there is none, it expired, or the blob API refused it. `on_ticket` gets each bought
    ticket before its PUT.
    """
    body = {"filename": opened.filename, "contentType": opened.content_type, "size": opened.size}
    payments: list[Payment] = []
    bought = 0
    rebought: Literal["expired", "refused"] | None = None
    held = ticket
    if held is not None and not usable(held):
        held, rebought = None, "expired"
    while True:
        if held is None:
            if bought >= _MAX_TICKETS_BOUGHT:
                raise UpstreamError(
                    "upload token expired twice; gave up after two tickets", status=0,
                    code="client_token_expired",
                )
            held, payment = await _buy_ticket(paid_call, body, idempotency_key, bought + (ticket is not None))
            bought += 1
            if payment is not None:
                payments.append(payment)
            if on_ticket is not None:
                await on_ticket(held, payment)  # persisted before the PUT: a retry or rerun can use it
            if not usable(held):
                held, rebought = None, "expired"
                continue
        try:
            blob = await _put(paid_call, opened, held, blob_api_url, earlier=bought == 0)
        except _TicketRefused as refusal:
            held, rebought = None, refusal.reason
            continue
        break

    await _confirm(paid_call, held.upload_id, blob.url)
    return UploadResult(
        blob_url=blob.url,
        upload_id=held.upload_id,
        pathname=blob.pathname or held.pathname,
        content_type=opened.content_type,
        size=opened.size,
        payments=tuple(payments),
        ticket_reused=bought == 0,
        # A ticket bought after another (kept or bought here) expired or was refused: a further fee.
        rebought_because=rebought if bought and (ticket is not None or bought > 1) else None,
    )


async def _buy_ticket(
    paid_call: PaidCall, body: dict[str, object], idempotency_key: str | None, earlier: int
) -> tuple[UploadTicket, Payment | None]:
    """Pay for a ticket. The idempotency key of a further ticket differs, or it would buy the same one."""
    if idempotency_key is None or earlier == 0:
        key = idempotency_key
    else:
        key = f"{idempotency_key}:retry" + (str(earlier) if earlier > 1 else "")
    paid = await paid_call.post("upload", "/api/upload", body, idempotency_key=key)
    try:
        return UploadTicket.model_validate(paid.data), paid.payment  # checks every field (server_values)
    except ValidationError:
        raise ProtocolError("upload ticket reply is malformed") from None


async def _confirm(paid_call: PaidCall, upload_id: str, blob_url: str) -> None:
    """Confirm the blob. The ticket is paid and the bytes are up by now, so a transient failure here is
    retried (confirming twice is harmless) rather than throwing the paid upload away."""
    body = {"uploadId": upload_id, "blobUrl": blob_url}
    for attempt in range(_CONFIRM_ATTEMPTS):
        last = attempt == _CONFIRM_ATTEMPTS - 1
        try:
            response = await paid_call.session.siwx_request(
                "upload_confirm", "POST", "/api/upload/confirm", json_body=body
            )
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
            if last:
                raise
            await asyncio.sleep(_CONFIRM_BACKOFF * (attempt + 1))
            continue
        transient = response.status_code >= 500 or response.status_code == 429
        if not transient or last:
            raise_for_status(response, "POST /api/upload/confirm")
            return
        delay = retry_after_seconds(response) if response.status_code == 429 else None
        await asyncio.sleep(min(delay, 10.0) if delay is not None else _CONFIRM_BACKOFF * (attempt + 1))


async def _put(
    paid_call: PaidCall, opened: OpenedSource, ticket: UploadTicket, blob_api_url: str, *, earlier: bool
) -> BlobInfo:
    """PUT the bytes with `ticket` (retried while the failure is transient). `earlier`: the ticket was paid
    before this call, so a refusal of its token (not only an expiry) is worth a new ticket."""
    url = check_url(f"{blob_api_url.rstrip('/')}/?{urlencode({'pathname': ticket.pathname})}", "blob_api_url")
    headers = {
        "authorization": f"Bearer {ticket.client_token}",
        "x-api-version": BLOB_API_VERSION,
        "x-content-type": opened.content_type,
        "x-vercel-blob-access": "public",
        "x-content-length": str(opened.size),
        # An explicit length stops httpx from switching the streamed body to chunked encoding.
        "content-length": str(opened.size),
    }
    last: StableStudioError | None = None
    for attempt in range(_PUT_ATTEMPTS):
        if attempt:
            # The ticket is paid: wait out a bad patch (well inside the token's 5 min) rather than give up.
            await asyncio.sleep(_PUT_BACKOFF * attempt)
        http = paid_call.session.http
        if http is None:
            raise RuntimeError("client is closed")
        paid_call.session.stats.requests["blob"] += 1
        try:
            content = opened.data if opened.data is not None else opened.chunks()
            response = await http.put(url, content=content, headers=headers)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            last = UpstreamError(f"blob PUT failed: {type(exc).__name__}", status=0)
            continue
        refuse_redirect(response, "blob PUT")
        if response.is_success:
            try:
                return BlobInfo.model_validate(response.json())
            except (ValueError, ValidationError):
                raise ProtocolError(f"blob PUT reply is malformed: {excerpt(response, 100)}") from None
        code = error_code(response)
        if code == "client_token_expired":
            raise _TicketRefused("expired")
        if earlier and (response.status_code == 403 or code in _TOKEN_REFUSALS):
            raise _TicketRefused("refused")
        if response.status_code >= 500 or response.status_code == 429 or code in _PUT_TRANSIENT:
            last = UpstreamError(
                "blob PUT failed", status=response.status_code, body_excerpt=excerpt(response), code=code
            )
            delay = retry_after_seconds(response)
            if delay:
                await asyncio.sleep(min(delay, 10.0))
            continue
        raise UpstreamError(
            "blob PUT refused", status=response.status_code, body_excerpt=excerpt(response), code=code
        )
    assert last is not None
    raise last
