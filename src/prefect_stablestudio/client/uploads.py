"""The three-step upload: paid ticket, streamed PUT to the blob API, SIWX confirm."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
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
from prefect_stablestudio.client.paying import PaymentFlow
from prefect_stablestudio.client.payment import Payment
from prefect_stablestudio.client.sources import OpenedSource

__all__ = ["upload_opened"]

BLOB_API_VERSION = "12"
# A ticket this close to expiry is not worth starting a PUT with.
_TICKET_MARGIN = timedelta(seconds=3)
_PUT_ATTEMPTS = 5
_PUT_BACKOFF = 0.5
_PUT_TRANSIENT = ("rate_limited", "service_unavailable")
_CONFIRM_ATTEMPTS = 4
_CONFIRM_BACKOFF = 0.5


class _TokenExpired(Exception):
    """The blob API said the client token expired."""


async def upload_opened(
    flow: PaymentFlow,
    opened: OpenedSource,
    *,
    blob_api_url: str,
    idempotency_key: str | None = None,
) -> UploadResult:
    """Run the three steps for a checked source. See `StableStudioClient.upload_detailed`."""
    body = {"filename": opened.filename, "contentType": opened.content_type, "size": opened.size}
    payments: list[Payment] = []
    for ticket_attempt in range(2):
        key = (
            idempotency_key if idempotency_key is None or ticket_attempt == 0 else f"{idempotency_key}:retry"
        )
        paid = await flow.post("upload", "/api/upload", body, idempotency_key=key)
        if paid.payment is not None:
            payments.append(paid.payment)
        try:
            ticket = UploadTicket.model_validate(paid.data)  # checks every field (server_values)
        except ValidationError:
            raise ProtocolError("upload ticket reply is malformed") from None
        expires = ticket.expires_at
        if expires is not None and expires.astimezone(UTC) - _TICKET_MARGIN <= datetime.now(UTC):
            continue
        try:
            blob = await _put(flow, opened, ticket, blob_api_url)
        except _TokenExpired:
            continue
        break
    else:
        raise UpstreamError(
            "upload token expired twice; gave up after two tickets", status=0, code="client_token_expired"
        )

    await _confirm(flow, ticket.upload_id, blob.url)
    return UploadResult(
        blob_url=blob.url,
        upload_id=ticket.upload_id,
        pathname=blob.pathname or ticket.pathname,
        content_type=opened.content_type,
        size=opened.size,
        payments=tuple(payments),
    )


async def _confirm(flow: PaymentFlow, upload_id: str, blob_url: str) -> None:
    """Confirm the blob. The ticket is paid and the bytes are up by now, so a transient failure here is
    retried (confirming twice is harmless) rather than throwing the paid upload away."""
    body = {"uploadId": upload_id, "blobUrl": blob_url}
    for attempt in range(_CONFIRM_ATTEMPTS):
        last = attempt == _CONFIRM_ATTEMPTS - 1
        try:
            response = await flow.session.siwx_request(
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


async def _put(flow: PaymentFlow, opened: OpenedSource, ticket: UploadTicket, blob_api_url: str) -> BlobInfo:
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
        http = flow.session.http
        if http is None:
            raise RuntimeError("client is closed")
        flow.session.stats.requests["blob"] += 1
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
            raise _TokenExpired
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
