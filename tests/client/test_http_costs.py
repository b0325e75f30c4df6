"""The HTTP edge's costs: one shared TLS context per process (building one costs ~20 ms of CPU), and a bound
on requests in the connection pool (httpcore's queue handling is quadratic)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from prefect_stablestudio.client import StableStudioClient
from prefect_stablestudio.client._http import BoundedTransport, tls_context


def test_the_shared_context_verifies_certificates_and_host_names() -> None:
    ctx = tls_context()
    assert ctx is tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 0  # a CA bundle is loaded


async def test_clients_reuse_it_instead_of_building_their_own(payer_key: str) -> None:
    contexts = []
    for _ in range(2):
        async with StableStudioClient(payer_key, base_url="https://stablestudio.dev") as client:
            http = client._session.http
            assert http is not None
            # httpx keeps the context on its connection pool; there is no public accessor.
            contexts.append(http._transport._inner._pool._ssl_context)  # type: ignore[attr-defined]
    assert contexts[0] is contexts[1] is tls_context()


class _Counting(httpx.AsyncBaseTransport):
    """A real transport that records how many requests it holds at once."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.now = self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_bounded_transport_lets_only_its_limit_into_the_pool(sim: Any) -> None:
    counting = _Counting()
    async with httpx.AsyncClient(transport=BoundedTransport(counting, 3)) as http:
        replies = await asyncio.gather(*(http.get(f"{sim.base_url}/_sim/state") for _ in range(20)))
    assert all(r.status_code == 200 for r in replies)
    assert counting.most == 3
