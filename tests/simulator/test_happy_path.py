"""The whole StableStudio flow against the simulator, the reference SDK signing: upload, edit, poll, fetch."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from PIL import Image

from prefect_stablestudio.simulator import Simulator, SimulatorSettings, run_simulator
from prefect_stablestudio.simulator.encoding import decode_b64_json
from tests.simulator.helpers import (
    EDIT_PATH,
    decode_header,
    edit_body,
    paid_post,
    png_bytes,
    siwx_request,
    upload_image,
)


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


async def wait_complete(
    http: httpx.AsyncClient, account: LocalAccount, job_id: str
) -> list[dict[str, object]]:
    """Poll (SIWX each time) until the job ends; returns every view seen."""
    views: list[dict[str, object]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = await siwx_request(http, account, "GET", f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        views.append(response.json())
        if views[-1]["status"] in ("complete", "failed"):
            return views
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {views[-1]}")


async def test_quote_is_x402_v2_for_the_real_body(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    blob_url = await upload_image(http, fresh_account, sim.blob_api_url)
    quote = await http.post(EDIT_PATH, json=edit_body(blob_url, resolution="2 MP"))
    assert quote.status_code == 402
    # The router's dialect: an empty body, everything in the header.
    assert quote.content == b"" and quote.headers["content-type"] == "application/json"
    assert quote.headers["cache-control"] == "no-store"
    assert decode_b64_json(quote.headers["x-agent-identity"])["challenge"]["route"] == EDIT_PATH
    required = decode_header(quote.headers["payment-required"])
    assert required["x402Version"] == 2 and "error" not in required
    assert required["resource"] == {
        "url": f"{sim.base_url}{EDIT_PATH}",
        "method": "POST",
        "description": "flux-2-pro - edit",
        "mimeType": "application/json",
        "tags": ["Generate"],
        "serviceName": "StableStudio",
    }
    bazaar = required["extensions"]["bazaar"]
    assert bazaar["info"]["input"]["method"] == "POST"
    body_schema = bazaar["schema"]["properties"]["input"]["properties"]["body"]
    assert body_schema["properties"]["resolution"]["enum"] == ["0.5 MP", "1 MP", "2 MP"]
    assert required["accepts"] == [
        {
            "scheme": "exact",
            "network": "eip155:8453",
            "amount": "60000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": sim.settings.pay_to.lower(),  # the router canonicalises it to lower case
            "maxTimeoutSeconds": 300,
            "extra": {"name": "USD Coin", "version": "2"},
        }
    ]


async def test_upload_edit_poll_and_fetch_a_real_image(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    before = sim.state()["counters"]["payments"]
    blob_url = await upload_image(http, fresh_account, sim.blob_api_url, png_bytes((40, 30), "navy"))
    assert blob_url.startswith(f"{sim.base_url}/blobs/uploads/")

    response, payload = await paid_post(http, fresh_account, EDIT_PATH, edit_body(blob_url))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["type"] == "flux-2-pro-edit" and job["status"] == "pending" and job["success"] is True
    assert job["pollUrl"] == f"{sim.base_url}/api/jobs/{job['jobId']}"
    settlement = decode_header(response.headers["payment-response"])
    assert settlement["success"] is True and settlement["payer"] == fresh_account.address
    assert settlement["transaction"].startswith("0x") and len(settlement["transaction"]) == 66

    views = await wait_complete(http, fresh_account, job["jobId"])
    final = views[-1]
    assert final["status"] == "complete" and final["progress"] == 100
    assert final["input"] == edit_body(blob_url)
    image = await http.get(final["result"]["imageUrl"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(image.content)) as rendered:
        assert rendered.format == "PNG"
        assert rendered.size[0] * 9 == pytest.approx(rendered.size[1] * 16, rel=0.05)
        assert 400_000 <= rendered.size[0] * rendered.size[1] <= 500_000

    state = sim.state()
    assert state["counters"]["payments"] == before + 2
    mine = [p for p in state["ledger"]["payments"] if p["payer"] == fresh_account.address]
    assert [(p["route"], p["amount"]) for p in mine] == [("upload", 10_000), ("flux-2-pro/edit", 30_000)]
    assert mine[1]["nonce"] == payload["payload"]["authorization"]["nonce"]
    assert mine[1]["resource_id"] == job["jobId"]
    assert state["spend"][fresh_account.address.lower()] == 40_000
    assert sim.balance(fresh_account.address) == 100_000_000 - 40_000


async def test_run_simulator_serves_in_the_callers_event_loop(fresh_account: LocalAccount) -> None:
    async with run_simulator(SimulatorSettings(latency_seconds=0, payment_identifier=True)) as local:
        assert local.blob_api_url == f"{local.base_url}/api/blob"
        async with httpx.AsyncClient(base_url=local.base_url) as client:
            blob_url = await upload_image(client, fresh_account, local.blob_api_url)
            response, _ = await paid_post(
                client, fresh_account, EDIT_PATH, edit_body(blob_url, output_format="webp")
            )
            views = await wait_complete(client, fresh_account, response.json()["jobId"])
            image = await client.get(views[-1]["result"]["imageUrl"])
            assert image.headers["content-type"] == "image/webp"
        assert local.state()["counters"]["payments"] == 2
    async with httpx.AsyncClient() as after:
        with pytest.raises(httpx.ConnectError):
            await after.get(f"{local.base_url}/_sim/state")
