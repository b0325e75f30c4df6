"""Small builders shared by the core tests (plain functions, no fixtures)."""

from __future__ import annotations

from typing import Any

from prefect_stablestudio.client.policy import WalletPolicy
from prefect_stablestudio.client.x402 import PaymentRequired, Quote, choose_requirement

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
