"""Every client of a process shares one verifying TLS context (building one costs ~20 ms of CPU)."""

from __future__ import annotations

import ssl

from stablestudio import StableStudioClient
from stablestudio._http import tls_context


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
            contexts.append(http._transport._pool._ssl_context)  # type: ignore[attr-defined]
    assert contexts[0] is contexts[1] is tls_context()
