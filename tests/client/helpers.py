"""Builders and checks shared by the protocol-client tests (plain functions and classes, no fixtures)."""

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from x402.http.utils import decode_payment_signature_header
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.types import ExactEIP3009Authorization
from x402.mechanisms.evm.verify import verify_eoa_signature

from prefect_stablestudio.client import (
    EditRequest,
    NoHooks,
    Payment,
    PaymentOutcome,
    Quote,
    StableStudioClient,
    WalletPolicy,
)
from prefect_stablestudio.client.encoding import encode_b64_json
from prefect_stablestudio.client.x402 import PaymentRequired, choose_requirement

USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


def requirement(**overrides: Any) -> dict[str, Any]:
    """A valid Base-USDC exact requirement ($0.03), with overrides."""
    req: dict[str, Any] = {
        "scheme": "exact",
        "network": "eip155:8453",
        "amount": "30000",
        "asset": USDC,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    req.update(overrides)
    return req


def payment_required(url: str, accepts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A PaymentRequired JSON object."""
    return {
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": url, "description": "test", "mimeType": "application/json"},
        "accepts": accepts,
        "extensions": extra.pop("extensions", {}),
        **extra,
    }


def quote_for(payment_required: PaymentRequired, url: str) -> Quote:
    """The quote the client would sign for `payment_required` under the default wallet policy."""
    return Quote(
        requirement=choose_requirement(payment_required, WalletPolicy()),
        payment_required=payment_required,
        resource_url=url,
        body_sha256="0" * 64,
    )


def assert_payment_verifies(header: str, signer: str, amount: int, pay_to: str) -> None:
    """Decode our header with the SDK and check the EIP-712 signature with the SDK's helpers."""
    payload = decode_payment_signature_header(header)
    auth = payload.payload["authorization"]
    accepted = payload.accepted
    digest = hash_eip3009_authorization(
        ExactEIP3009Authorization(
            from_address=auth["from"],
            to=auth["to"],
            value=auth["value"],
            valid_after=auth["validAfter"],
            valid_before=auth["validBefore"],
            nonce=auth["nonce"],
        ),
        chain_id=int(accepted.network.split(":")[1]),
        verifying_contract=accepted.asset,
        token_name=accepted.extra["name"],
        token_version=accepted.extra["version"],
    )
    signature = bytes.fromhex(payload.payload["signature"].removeprefix("0x"))
    assert verify_eoa_signature(digest, signature, signer)
    assert auth["from"] == signer
    assert int(auth["value"]) == amount == int(accepted.amount)
    assert auth["to"].lower() == pay_to.lower() == accepted.pay_to.lower()
    assert auth["validAfter"] == "0"
    assert int(auth["validBefore"]) >= time.time() + 6
    assert len(auth["nonce"]) == 66


def image_bytes(fmt: str = "PNG", color: str = "teal") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, fmt)
    return buf.getvalue()


def simulator_client(sim: Any, key: str, **kw: Any) -> StableStudioClient:
    return StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url, **kw)


SIWX_URL = "http://127.0.0.1:8123/api/jobs/abc"


def challenge_info(**overrides: Any) -> dict[str, Any]:
    base = {
        "domain": "127.0.0.1:8123",
        "uri": SIWX_URL,
        "version": "1",
        "chainId": "eip155:8453",
        "type": "eip191",
        "nonce": "0123456789abcdef0123456789abcdef",
        "issuedAt": "2026-11-24T00:00:00.123456Z",
        "expirationTime": "2026-11-24T00:05:00.123456Z",
        "statement": "Sign in to verify your wallet identity",
    }
    base.update(overrides)
    return base


def siwx_402(request: Request, **overrides: Any) -> Response:
    url = str(request.url)
    info = challenge_info(**{"domain": request.url.netloc, "uri": url, **overrides})
    pr = payment_required(
        url,
        [],
        extensions={
            "sign-in-with-x": {
                "info": info,
                "supportedChains": [{"chainId": "eip155:8453", "type": "eip191"}],
            }
        },
    )
    return JSONResponse(pr, status_code=402, headers={"PAYMENT-REQUIRED": encode_b64_json(pr)})


class Recorder(NoHooks):
    """Hooks that record every call (the proof that nothing was signed is `signed == []`)."""

    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self.signed: list[Payment] = []
        self.outcomes: list[PaymentOutcome] = []

    async def before_signing(self, quote: Quote) -> None:
        self.quotes.append(quote)

    async def after_signing(self, payment: Payment) -> None:
        self.signed.append(payment)

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        self.outcomes.append(outcome)


EDIT_REQUEST = EditRequest(prompt="make it snow", images=["https://b.example/x.png"])
"""A valid edit request for servers that never look at the image."""


def fake_studio_client(
    key: str, base_url: str, hooks: Recorder | None = None, **kw: Any
) -> StableStudioClient:
    """A client for a purpose-built server (`FakeStudio`): it re-sends a lost payment after 10 ms."""
    kw.setdefault("resend_backoff", 0.01)
    return StableStudioClient(key, base_url=base_url, hooks=hooks, **kw)
