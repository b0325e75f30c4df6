"""The private parts of Prefect's client that `blocks/prefect_http.py` relies on: fail loudly on a change.

If one of these fails after a Prefect upgrade, read `blocks/prefect_http.py`: adapt the reach or drop it
(Prefect's own `increment_concurrency_slots` is always correct, only slower on a busy SQLite server), then
add the version to `CHECKED_ON`.
"""

from __future__ import annotations

import inspect

import httpx
import prefect
import pytest
from prefect.client.base import PrefectHttpxAsyncClient
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from prefect_stablestudio.blocks.prefect_http import CHECKED_ON, increment_caps, prefect_session

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_the_checked_versions_include_the_installed_prefect() -> None:
    assert prefect.__version__ in CHECKED_ON, (
        f"Prefect {prefect.__version__} is not among the versions blocks/prefect_http.py was checked on"
    )


async def test_a_prefect_clients_session_retries_in_send_and_increments_go_through_it() -> (
    None
):
    name = "stablestudio-test-prefect-http"
    async with get_client() as client:
        assert isinstance(client, PrefectClient)
        assert isinstance(client._client, PrefectHttpxAsyncClient)
        # The reach exists to skip this override's slow retry loop: it must still be an override.
        assert PrefectHttpxAsyncClient.send is not httpx.AsyncClient.send
        assert "HTTP_503_SERVICE_UNAVAILABLE" in inspect.getsource(PrefectHttpxAsyncClient.send)
        # The public path this module falls back to keeps its signature.
        assert {"names", "slots", "mode"} <= set(
            inspect.signature(client.increment_concurrency_slots).parameters
        )
        # CSRF support turns itself off after the first write to a server without CSRF protection; from then
        # on the session is used directly.
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=100, active=True, slot_decay_per_second=1e-9)
        )
        try:
            assert client._client.enable_csrf_support is False
            assert prefect_session(client) is client._client
            response = await increment_caps(client, [name], 7)
            assert [item["name"] for item in response.json()] == [name]
            limit = await client.read_global_concurrency_limit_by_name(name)
            assert limit.active_slots == 7
        finally:
            await client.delete_global_concurrency_limit_by_name(name)
