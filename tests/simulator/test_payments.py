"""x402 payments: what the reference SDK signs is accepted; tampered ones are refused and move no money."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact import register_exact_evm_client

from prefect_stablestudio.simulator import Simulator
from prefect_stablestudio.simulator.dialect import INVALID_JSON
from tests.simulator.helpers import (
    assert_payment_rejected,
    decode_header,
    edit_body,
    encode_header,
    sdk_payment,
    upload_image,
)

UPLOAD_BODY = {"filename": "a.png", "contentType": "image/png"}


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


async def quote_header(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/upload", json=UPLOAD_BODY)
    assert response.status_code == 402
    return str(response.headers["payment-required"])


async def sign_tampered_quote(
    account: LocalAccount, header: str, change: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Let the SDK sign a quote altered in transit (spend controls off: the tampered asset may be odd)."""
    required = decode_header(header)
    change(required["accepts"][0])
    client = register_exact_evm_client(x402Client(), account)
    client.set_spend_controls(False)
    payload = await client.create_payment_payload(decode_payment_required_header(encode_header(required)))
    return dict(json.loads(base64.b64decode(encode_payment_signature_header(payload))))


async def pay(http: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await http.post(
        "/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": encode_header(payload)}
    )


def assert_no_money_moved(sim: Simulator, account: LocalAccount) -> None:
    assert sim.balance(account.address) == sim.settings.default_balance
    assert not [p for p in sim.state()["ledger"]["payments"] if p["payer"].lower() == account.address.lower()]


async def test_sdk_payment_is_accepted_and_settled(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    payload = await sdk_payment(fresh_account, await quote_header(http))
    response = await pay(http, payload)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"uploadId", "clientToken", "pathname", "expiresAt"}
    settlement = decode_header(response.headers["payment-response"])
    assert settlement == {
        "success": True,
        "transaction": settlement["transaction"],
        "network": "eip155:8453",
        "payer": fresh_account.address,
        "amount": "10000",
    }
    assert sim.balance(fresh_account.address) == sim.settings.default_balance - 10_000


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(requirement: dict[str, Any]) -> None:
        requirement[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("amount", "1"), "requirements_mismatch"),
        (_set("payTo", "0x000000000000000000000000000000000000dEaD"), "requirements_mismatch"),
        (_set("network", "eip155:1"), "requirements_mismatch"),
        (_set("extra", {"name": "USDC", "version": "2"}), "requirements_mismatch"),
    ],
    ids=["amount", "payTo", "chain", "eip712-domain"],
)
async def test_payment_for_an_altered_quote_is_refused(
    sim: Simulator,
    http: httpx.AsyncClient,
    fresh_account: LocalAccount,
    change: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    payload = await sign_tampered_quote(fresh_account, await quote_header(http), change)
    response = await pay(http, payload)
    assert_payment_rejected(response, reason)
    assert_no_money_moved(sim, fresh_account)


@pytest.mark.parametrize(
    "change",
    [_set("network", "eip155:1"), _set("extra", {"name": "USDC", "version": "2"})],
    ids=["wrong-chain", "wrong-eip712-domain"],
)
async def test_signature_over_another_domain_is_refused_even_with_the_quoted_accepted(
    sim: Simulator,
    http: httpx.AsyncClient,
    fresh_account: LocalAccount,
    change: Callable[[dict[str, Any]], None],
) -> None:
    header = await quote_header(http)
    payload = await sign_tampered_quote(fresh_account, header, change)
    payload["accepted"] = decode_header(header)["accepts"][0]
    response = await pay(http, payload)
    assert_payment_rejected(response, "invalid_exact_evm_signature")
    assert_no_money_moved(sim, fresh_account)


def _auth(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        payload["payload"]["authorization"][key] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_auth("value", "1"), "invalid_exact_evm_payload_authorization_value_mismatch"),
        (
            _auth("to", "0x000000000000000000000000000000000000dEaD"),
            "invalid_exact_evm_recipient_mismatch",
        ),
        (
            _auth("validBefore", str(int(time.time()) - 1)),
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            _auth("validBefore", str(int(time.time()) + 3)),
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            _auth("validAfter", str(int(time.time()) + 3600)),
            "invalid_exact_evm_payload_authorization_valid_after",
        ),
        (_auth("from", "0x000000000000000000000000000000000000bEEF"), "invalid_exact_evm_signature"),
        (_auth("nonce", "0x" + "ab" * 32), "invalid_exact_evm_signature"),
    ],
    ids=["value", "to", "expired", "expires-within-margin", "not-yet-valid", "from", "nonce"],
)
async def test_signed_authorization_altered_afterwards_is_refused(
    sim: Simulator,
    http: httpx.AsyncClient,
    fresh_account: LocalAccount,
    change: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    payload = await sdk_payment(fresh_account, await quote_header(http))
    change(payload)
    response = await pay(http, payload)
    assert_payment_rejected(response, reason)
    assert_no_money_moved(sim, fresh_account)


async def test_replayed_payment_is_refused_and_counted(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    replays_before = sim.state()["counters"]["replays_refused"]
    payload = await sdk_payment(fresh_account, await quote_header(http))
    first = await pay(http, payload)
    assert first.status_code == 200
    replay = await pay(http, payload)
    assert_payment_rejected(replay, "invalid_exact_evm_nonce_already_used")
    assert "authorization is used or canceled" in replay.json()["error"]
    assert sim.state()["counters"]["replays_refused"] == replays_before + 1
    assert sim.balance(fresh_account.address) == sim.settings.default_balance - 10_000
    assert len([p for p in sim.state()["ledger"]["payments"] if p["payer"] == fresh_account.address]) == 1


async def test_insufficient_funds_then_funded(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    poor = make_sim(default_balance=9_999)
    async with httpx.AsyncClient(base_url=poor.base_url) as http:
        payload = await sdk_payment(fresh_account, await quote_header(http))
        refused = await pay(http, payload)
        assert_payment_rejected(refused, "invalid_exact_evm_insufficient_balance")
        assert poor.state()["counters"]["payments"] == 0
        poor.fund(fresh_account.address, Decimal("0.01"))
        assert (await pay(http, payload)).status_code == 200
        assert poor.balance(fresh_account.address) == 9_999


async def test_funded_addresses_start_with_their_balance(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    rich = make_sim(funded={fresh_account.address: Decimal("5")}, default_balance=0)
    assert rich.balance(fresh_account.address) == 5_000_000
    assert rich.balance("0x" + "1" * 40) == 0


@pytest.mark.parametrize("header", ["not base64!", encode_header({"x402Version": 1}), encode_header([1, 2])])
async def test_undecodable_payment_is_a_400(sim: Simulator, http: httpx.AsyncClient, header: str) -> None:
    response = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"


async def test_invalid_body_costs_nothing_and_gets_no_quote(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    response = await http.post(
        "/api/upload", json={"filename": "a.exe", "contentType": "application/x-msdos"}
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["success"], body["error"]) == (False, "Validation failed")
    assert [(i["code"], i["path"]) for i in body["issues"]] == [("custom", ["contentType"])]
    assert "payment-required" not in response.headers
    malformed = await http.post(
        "/api/upload", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (malformed.status_code, malformed.json()) == (400, INVALID_JSON)


async def test_edit_refuses_images_that_are_not_its_own_blobs(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    body = {"prompt": "x", "images": ["https://example.com/cat.png"], "resolution": "1 MP"}
    response = await http.post("/api/generate/flux-2-pro/edit", json=body)
    assert response.status_code == 400
    assert response.json()["issues"][0]["path"] == ["images", 0]
    unknown = await http.post("/api/generate/flux-2-pro/vectorize", json=body)
    assert unknown.status_code == 404 and unknown.json()["code"] == "route_not_found"


async def test_after_payment_order_quotes_max_price_and_refuses_the_signed_body_before_settling(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    """validation_order="after_payment", the router's own order: an edit body it cannot price is quoted at
    the route's maxPrice, a static-priced upload at its price; the 400 comes after the signed request, and
    nothing moves."""
    server = make_sim(validation_order="after_payment")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        blob_url = await upload_image(http, fresh_account, server.blob_api_url)
        paid_before = server.balance(fresh_account.address)
        bad_edit = edit_body(blob_url, resolution="3 MP")
        quote = await http.post("/api/generate/flux-2-pro/edit", json=bad_edit)
        assert quote.status_code == 402 and quote.content == b""
        assert decode_header(quote.headers["payment-required"])["accepts"][0]["amount"] == "10000000"
        # The official SDK's own spend control refuses $10; off, it signs what it was quoted.
        signed_payload = await sign_tampered_quote(
            fresh_account, quote.headers["payment-required"], lambda _: None
        )
        header = encode_header(signed_payload)
        signed = await http.post(
            "/api/generate/flux-2-pro/edit", json=bad_edit, headers={"PAYMENT-SIGNATURE": header}
        )
        assert signed.status_code == 400 and "payment-required" not in signed.headers
        assert signed.json()["error"] == "Validation failed"
        assert [i["path"] for i in signed.json()["issues"]] == [["resolution"]]

        bad_upload = {"filename": "a/b.png", "contentType": "image/png"}
        upload_quote = await http.post("/api/upload", json=bad_upload)
        assert decode_header(upload_quote.headers["payment-required"])["accepts"][0]["amount"] == "10000"
        malformed = await http.post(
            "/api/generate/flux-2-pro/edit", content=b"{", headers={"content-type": "application/json"}
        )
        assert decode_header(malformed.headers["payment-required"])["accepts"][0]["amount"] == "10000000"
    assert server.balance(fresh_account.address) == paid_before
    assert [p["route"] for p in server.state()["ledger"]["payments"]] == ["upload"]  # the blob's, earlier
