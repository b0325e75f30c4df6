"""Discovery as the router serves it: /openapi.json with prices, /llms.txt, the route-not-found envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from prefect_stablestudio.simulator import Simulator


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


async def test_openapi_lists_each_paid_route_with_its_price_or_price_range(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    document = (await http.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0" and document["servers"] == [{"url": sim.base_url}]
    upload = document["paths"]["/api/upload"]["post"]
    assert upload["x-payment-info"]["price"] == {"mode": "fixed", "currency": "USD", "amount": "0.01"}
    edit = document["paths"]["/api/generate/flux-2-pro/edit"]["post"]
    assert edit["x-payment-info"]["price"] == {"mode": "dynamic", "currency": "USD", "min": "0", "max": "10"}
    schema = edit["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["prompt", "images"]
    assert document["paths"]["/api/jobs/{id}"]["get"]["security"] == [{"siwx": []}]
    grok = document["paths"]["/api/generate/grok/edit"]["post"]["x-payment-info"]["price"]
    assert grok == {"mode": "fixed", "currency": "USD", "amount": "0.022"}
    llms = await http.get("/llms.txt")
    assert llms.status_code == 200 and "/api/upload" in llms.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/nope"), ("GET", "/api/upload"), ("POST", "/api/generate/flux-2-pro/vectorize")],
    ids=["unknown-path", "wrong-method", "unknown-model"],
)
async def test_an_unknown_route_answers_the_route_not_found_envelope(
    sim: Simulator, http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path, json={})
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "code": "route_not_found",
        "error": "Route not found. Rediscover this origin and retry with the current discovery document.",
        "requestedUrl": f"{sim.base_url}{path}",
        "discovery": {"openapi": f"{sim.base_url}/openapi.json", "llmsTxt": f"{sim.base_url}/llms.txt"},
    }
