"""The simulator and the router stand-in answer the same probes the same way (issue 20: "the simulator speaks
the router's dialect"). Each test runs against both; the payments are made by the official x402 Python SDK.

The simulator runs with the router's validation order (``SIMULATOR_AS_ROUTER``), so that the two can be
compared on invalid bodies too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from prefect_stablestudio.simulator.encoding import decode_b64_json
from tests.conformance.standin import Server
from tests.simulator.helpers import EDIT_PATH, edit_body, encode_header, sdk_payment, upload_image

UPLOAD_BODY = {"filename": "a.png", "contentType": "image/png"}


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


async def test_a_quote_has_an_empty_body_and_everything_in_its_headers(http: httpx.AsyncClient) -> None:
    quote = await http.post("/api/upload", json=UPLOAD_BODY)
    assert (quote.status_code, quote.content) == (402, b"")
    assert quote.headers["cache-control"] == "no-store"
    assert {"x-agent-identity", "www-authenticate"} <= set(quote.headers)
    required = decode_b64_json(quote.headers["payment-required"])
    assert "error" not in required
    assert set(required["resource"]) == {"url", "method", "description", "mimeType", "tags", "serviceName"}
    assert (required["resource"]["tags"], required["resource"]["serviceName"]) == (["Upload"], "StableStudio")
    (accept,) = required["accepts"]
    assert accept["payTo"] == accept["payTo"].lower() and accept["amount"] == "10000"
    body = required["extensions"]["bazaar"]["schema"]["properties"]["input"]["properties"]["body"]
    assert body["required"] == ["filename", "contentType"]


async def test_a_replay_is_refused_with_the_official_code_in_reason(
    server: Server, http: httpx.AsyncClient
) -> None:
    account = Account.create()
    quote = await http.post("/api/upload", json=UPLOAD_BODY)
    header = encode_header(await sdk_payment(account, quote.headers["payment-required"]))
    first = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
    assert first.status_code == 200, first.text
    replay = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
    assert replay.status_code == 402
    refusal = replay.json()
    assert refusal["reason"] == "invalid_exact_evm_nonce_already_used"
    assert refusal["error"].startswith("Payment rejected (invalid_exact_evm_nonce_already_used): ")
    assert "authorization is used or canceled" in refusal["error"]
    fresh = decode_b64_json(replay.headers["payment-required"])
    assert "error" not in fresh and fresh["accepts"]
    assert server.paid_by(account.address) == [10_000]


async def test_a_payment_signed_for_another_price_is_a_requirements_mismatch(
    server: Server, http: httpx.AsyncClient
) -> None:
    account = Account.create()
    blob_url = await upload_image(http, account, server.blob_api_url)
    cheap = await http.post(EDIT_PATH, json=edit_body(blob_url, resolution="0.5 MP"))
    header = encode_header(await sdk_payment(account, cheap.headers["payment-required"]))
    dear = edit_body(blob_url, resolution="2 MP")
    refused = await http.post(EDIT_PATH, json=dear, headers={"PAYMENT-SIGNATURE": header})
    assert refused.status_code == 402
    assert refused.json()["reason"] == "requirements_mismatch"
    assert server.paid_by(account.address) == [10_000]  # the upload only


async def test_an_invalid_edit_is_quoted_at_max_price_and_refused_after_signing_with_nothing_moved(
    server: Server, http: httpx.AsyncClient
) -> None:
    account = Account.create()
    blob_url = await upload_image(http, account, server.blob_api_url)
    invalid = edit_body(blob_url, resolution="3 MP")
    quote = await http.post(EDIT_PATH, json=invalid)
    assert quote.status_code == 402 and quote.content == b""
    (accept,) = decode_b64_json(quote.headers["payment-required"])["accepts"]
    assert accept["amount"] == "10000000"  # the route's maxPrice, $10
    # The official SDK's spend control would refuse $10 itself: sign the $0.03 quote's twin instead, since
    # the body is checked before the payment is even looked at.
    valid_quote = await http.post(EDIT_PATH, json=edit_body(blob_url, resolution="0.5 MP"))
    header = encode_header(await sdk_payment(account, valid_quote.headers["payment-required"]))
    refused = await http.post(EDIT_PATH, json=invalid, headers={"PAYMENT-SIGNATURE": header})
    assert refused.status_code == 400 and "payment-required" not in refused.headers
    body = refused.json()
    assert (body["success"], body["error"]) == (False, "Validation failed")
    assert [issue["path"] for issue in body["issues"]] == [["resolution"]]
    assert server.paid_by(account.address) == [10_000]
    not_json = await http.post(EDIT_PATH, content=b"{", headers={"PAYMENT-SIGNATURE": header})
    assert (not_json.status_code, not_json.json()) == (
        400,
        {"success": False, "error": "Invalid JSON", "issues": []},
    )


async def test_a_refused_siwx_proof_gets_no_new_challenge(http: httpx.AsyncClient) -> None:
    refused = await http.get("/api/jobs/x", headers={"SIGN-IN-WITH-X": encode_header({"domain": 1})})
    assert refused.status_code == 402
    assert refused.json()["error"] == "siwx_malformed"
    assert "payment-required" not in refused.headers


async def test_discovery_and_the_route_not_found_envelope(server: Server, http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/nope")
    assert missing.status_code == 404
    envelope: dict[str, Any] = missing.json()
    assert (envelope["success"], envelope["code"]) == (False, "route_not_found")
    assert envelope["discovery"] == {
        "openapi": f"{server.base_url}/openapi.json",
        "llmsTxt": f"{server.base_url}/llms.txt",
    }
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert paths["/api/upload"]["post"]["x-payment-info"]["price"] == {
        "mode": "fixed",
        "currency": "USD",
        "amount": "0.01",
    }
    edit_price = paths[EDIT_PATH]["post"]["x-payment-info"]["price"]
    assert edit_price == {"mode": "dynamic", "currency": "USD", "min": "0", "max": "10"}
    assert (await http.get("/llms.txt")).status_code == 200
