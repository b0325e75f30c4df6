"""The HTTP edge: which URLs we talk to, one request with counting, and no redirect ever followed blindly.

Payment and SIWX headers are bound to one origin, so API requests never follow a redirect: a 3xx is a
`ProtocolError`. Plain downloads (no credentials) may follow redirects, within the same URL rules.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from prefect_stablestudio.client.errors import InvalidRequest, ProtocolError, RateLimited, UpstreamError
from prefect_stablestudio.client.server_values import is_loopback_host

__all__ = [
    "BoundedTransport",
    "ClientStats",
    "check_url",
    "error_code",
    "excerpt",
    "raise_for_status",
    "refusal_code",
    "retry_after_seconds",
    "tls_context",
]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client of this process shares (certifi's CA bundle, or $SSL_CERT_FILE).

    Building one parses the whole CA bundle (~20 ms of CPU); the Prefect tasks open a client per task, so a
    context per client was most of the CPU an edit cost. An `SSLContext` is safe to share across threads and
    event loops. Read once: a later change of $SSL_CERT_FILE needs a new process.
    """
    return httpx.create_ssl_context()


class BoundedTransport(httpx.AsyncBaseTransport):
    """A transport that lets at most `limit` requests into the connection pool; the others wait here.

    httpcore's pool matches every queued request against every connection each time one frees up, which is
    quadratic in the queue: 1000 edits at once on 100 connections spent most of their CPU there (bench/: 29 ms
    per edit instead of 13). Waiting on a semaphore costs the same whatever the queue.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int) -> None:
        self._inner = inner
        self._gate = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward `request` once fewer than `limit` are in the pool (the body is read after release)."""
        async with self._gate:
            return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()


def check_url(url: str, what: str = "URL") -> str:
    """Return `url` if it is HTTPS, or HTTP on a loopback host; else raise.

    Raises:
        InvalidRequest: another scheme, plain HTTP to a non-loopback host, or no host.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidRequest(f"{what} has no host: {url[:200]!r}", field=what)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return url
    raise InvalidRequest(f"{what} must use https (http only on loopback): {url[:200]!r}", field=what)


def excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The first `limit` characters of a (read) response body."""
    try:
        return response.text[:limit]
    except Exception:  # undecodable bytes: say so rather than fail while reporting another failure
        return f"<{len(response.content)} bytes>"


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


_MACHINE_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def refusal_code(data: Any) -> str | None:
    """The machine code of a JSON error body, read the way the official x402 stack writes it.

    `reason` first (@agentcash/router: `{"error": "<prose>", "reason": "requirements_mismatch"}`), then `code`
    (`{"code": "route_not_found", "error": "<prose>"}`), then `error` when it is a code rather
    than prose (`{"error": "siwx_expired"}`) or an object with a code (`{"error": {"code": "forbidden"}}`).

    Example:
        >>> refusal_code({"error": "Payment rejected (x): text", "reason": "requirements_mismatch"})
        'requirements_mismatch'
        >>> refusal_code({"error": "Validation failed"}) is None
        True
    """
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        err = err.get("code")
    for candidate in (data.get("reason"), data.get("code"), err):
        if isinstance(candidate, str) and _MACHINE_CODE.match(candidate):
            return candidate
    return None


def error_code(response: httpx.Response) -> str | None:
    """The machine code of a JSON error response (see `refusal_code`), or None."""
    try:
        data: Any = response.json()
    except ValueError:
        return None
    return refusal_code(data)


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Raise `RateLimited` / `UpstreamError` for a non-2xx response; return for 2xx."""
    if response.is_success:
        return
    if response.status_code == 429 or (response.status_code == 503 and "retry-after" in response.headers):
        raise RateLimited(
            f"{what}: rate limited",
            status=response.status_code,
            body_excerpt=excerpt(response),
            retry_after=retry_after_seconds(response),
        )
    raise UpstreamError(
        f"{what} failed",
        status=response.status_code,
        body_excerpt=excerpt(response),
        code=error_code(response),
    )


def refuse_redirect(response: httpx.Response, what: str) -> None:
    """Raise `ProtocolError` for any 3xx: credentials on this request are bound to its origin."""
    if response.is_redirect or 300 <= response.status_code < 400:
        target = response.headers.get("location", "")
        raise ProtocolError(
            f"{what}: refusing to follow a redirect (HTTP {response.status_code}) to {target[:200]!r}"
        )


@dataclass
class ClientStats:
    """Requests made by one client, per route kind, and what was signed. For benchmarks and tests.

    Kinds: "generate", "upload", "upload_confirm", "jobs", "blob", "download".
    """

    requests: Counter[str] = field(default_factory=Counter)
    payments_signed: int = 0
    siwx_proofs_signed: int = 0
    siwx_challenges: int = 0

    @property
    def total_requests(self) -> int:
        """All requests made."""
        return sum(self.requests.values())

    def snapshot(self) -> dict[str, Any]:
        """A plain dict copy."""
        return {
            "requests": dict(self.requests),
            "payments_signed": self.payments_signed,
            "siwx_proofs_signed": self.siwx_proofs_signed,
            "siwx_challenges": self.siwx_challenges,
        }
