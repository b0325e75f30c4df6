"""The one reach into Prefect's private HTTP client: a cap increment retried in milliseconds, not seconds.

Why (a speed trick, fenced here): Prefect's server on SQLite answers a write that races another one with 503
(SQLITE_BUSY: nothing written), and Prefect's client (`PrefectHttpxAsyncClient.send`) waits 2, 4 and 8 s
before each retry. 30 edits paying at once took 23 s instead of 7 s (`python -m bench`, the "budget busy"
rows; bench/README.md). So an increment is sent through the base `httpx.AsyncClient.send` of the session a
`PrefectClient` holds in its private `_client` attribute, retried after milliseconds while the answer is 503,
and sent one at a time per event loop so that this process's own reservations do not race each other.

Worst case: `BUSY_ATTEMPTS` (50) tries, the n-th wait 10 ms x n x [0.5, 1.5): at most 18.4 s of waiting for
one increment on a server that stays busy (usually a few tries of a few ms each).

Checked on Prefect 3.8.8 and 3.9.1 (`CHECKED_ON`): `PrefectClient._client` is a `PrefectHttpxAsyncClient`
(a subclass of `httpx.AsyncClient` overriding `send`) with an `enable_csrf_support` attribute. When that
session is missing, or CSRF tokens must be fetched (which Prefect's `send` does), Prefect's own
`increment_concurrency_slots` is used instead. tests/blocks/test_prefect_http.py fails loudly when a Prefect
release changes any of this.

Example:
    ```python
    async with get_client() as client:
        response = await increment_caps(client, ["stablestudio-0xabc-day"], 45_000)
    ```
"""

from __future__ import annotations

import asyncio
import random
import weakref
from typing import Any

import httpx

__all__ = ["BUSY_ATTEMPTS", "CHECKED_ON", "increment_caps", "prefect_session"]

CHECKED_ON = ("3.8.8", "3.9.1")
"""The Prefect versions whose private client this module was checked against."""

BUSY_ATTEMPTS = 50
BUSY_BACKOFF_SECONDS = 0.01

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def prefect_session(client: Any) -> httpx.AsyncClient | None:
    """The httpx session of a `PrefectClient`, or None when it cannot be used directly."""
    http = getattr(client, "_client", None)
    if not isinstance(http, httpx.AsyncClient) or getattr(http, "enable_csrf_support", False):
        return None
    return http


async def increment_caps(client: Any, names: list[str], amount: int) -> httpx.Response:
    """`POST /v2/concurrency_limits/increment` in rate-limit mode, retried after milliseconds while 503.

    Raises:
        httpx.HTTPStatusError: any other error status (423 when a cap cannot take `amount`).
    """
    http = prefect_session(client)
    if http is None:  # keep Prefect's own retrying path
        response: httpx.Response = await client.increment_concurrency_slots(
            names=names, slots=amount, mode="rate_limit"
        )
        return response
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    body = {"names": names, "slots": amount, "mode": "rate_limit"}
    async with lock:
        for attempt in range(BUSY_ATTEMPTS):
            request = http.build_request("POST", "/v2/concurrency_limits/increment", json=body)
            # The base class's send: Prefect's override is the 2-4-8 s retry loop this function replaces.
            response = await httpx.AsyncClient.send(http, request)
            if response.status_code != 503 or attempt == BUSY_ATTEMPTS - 1:
                break
            await asyncio.sleep(BUSY_BACKOFF_SECONDS * (1 + attempt) * (0.5 + random.random()))
    response.raise_for_status()
    return response
