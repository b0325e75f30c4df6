"""Decoding a 402, choosing a requirement and the policy check: pure, no server."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from prefect_stablestudio.client import PolicyRefused, ProtocolError, WalletPolicy
from prefect_stablestudio.client.encoding import encode_b64_json
from prefect_stablestudio.client.money import (
    atomic_from_dollars,
    dollars_from_atomic,
    plain_dollars_from_atomic,
    usd_cap_from_atomic,
    usd_exact_from_atomic,
    usd_from_atomic,
    usd_from_dollars,
)
from prefect_stablestudio.client.x402 import (
    PaymentRequired,
    choose_requirement,
    decode_payment_required,
    payment_identifier_for,
)
from tests.client.helpers import PAY_TO, USDC, payment_required, requirement

URL = "https://stablestudio.dev/api/generate/flux-2-pro/edit"


def pr(*accepts: dict[str, Any]) -> PaymentRequired:
    return decode_payment_required(encode_b64_json(payment_required(URL, list(accepts))))


def test_decodes_and_chooses_the_valid_requirement() -> None:
    chosen = choose_requirement(pr(requirement()), WalletPolicy())
    assert (chosen.amount, chosen.pay_to, chosen.asset) == (30_000, PAY_TO, USDC)
    assert chosen.raw == requirement()


def test_checks_every_requirement_not_just_the_first() -> None:
    chosen = choose_requirement(
        pr(requirement(network="eip155:1"), requirement(amount="40000")), WalletPolicy()
    )
    assert chosen.amount == 40_000


@pytest.mark.parametrize(
    ("override", "policy", "reason"),
    [
        ({"amount": "1000001"}, WalletPolicy(), "amount_over_cap"),
        ({"amount": "60001"}, WalletPolicy(max_amount_per_call=60_000), "amount_over_cap"),
        ({"amount": "0"}, WalletPolicy(), "amount_invalid"),
        ({"asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e"}, WalletPolicy(), "asset_not_allowed"),
        ({"extra": {"name": "USDC", "version": "2"}}, WalletPolicy(), "asset_domain_mismatch"),
        ({"extra": {}}, WalletPolicy(), "asset_domain_mismatch"),
        ({"network": "eip155:84532"}, WalletPolicy(), "network_not_allowed"),
        ({"network": "solana:mainnet"}, WalletPolicy(), "network_not_allowed"),
        ({"payTo": "0x" + "1" * 40}, WalletPolicy(allowed_pay_to=frozenset({PAY_TO})), "pay_to_not_allowed"),
        ({"payTo": "0x" + "0" * 40}, WalletPolicy(), "pay_to_invalid"),
        ({"payTo": ""}, WalletPolicy(), "pay_to_invalid"),
        ({"payTo": "0x1234"}, WalletPolicy(), "pay_to_invalid"),
        ({"scheme": "upto"}, WalletPolicy(), "scheme_not_allowed"),
        ({"maxTimeoutSeconds": 0}, WalletPolicy(), "timeout_out_of_bounds"),
        ({"maxTimeoutSeconds": 5}, WalletPolicy(), "timeout_out_of_bounds"),
        ({"maxTimeoutSeconds": 10 * 365 * 86_400}, WalletPolicy(), "timeout_out_of_bounds"),
    ],
)
def test_every_policy_refusal_has_a_reason(
    override: dict[str, Any], policy: WalletPolicy, reason: str
) -> None:
    with pytest.raises(PolicyRefused) as info:
        choose_requirement(pr(requirement(**override)), policy)
    assert info.value.reason == reason


def test_pay_to_allow_list_is_case_insensitive() -> None:
    policy = WalletPolicy(allowed_pay_to=frozenset({PAY_TO.lower()}))
    assert choose_requirement(pr(requirement()), policy).pay_to == PAY_TO


@pytest.mark.parametrize("amount", [30000.0, "3e4", "-1", "0x10", True, None])
def test_malformed_amounts_are_refused(amount: Any) -> None:
    with pytest.raises(PolicyRefused) as info:
        choose_requirement(pr(requirement(amount=amount)), WalletPolicy())
    assert info.value.reason == "malformed_requirement"


def test_missing_pay_to_is_refused() -> None:
    req = requirement()
    del req["payTo"]
    with pytest.raises(PolicyRefused):
        choose_requirement(pr(req), WalletPolicy())


def test_empty_accepts_is_refused() -> None:
    with pytest.raises(PolicyRefused) as info:
        choose_requirement(pr(), WalletPolicy())
    assert info.value.reason == "no_requirements"


@pytest.mark.parametrize(
    "data", [{"x402Version": 1, "accepts": []}, [1, 2], {"x402Version": 2, "accepts": 3}]
)
def test_non_v2_payment_required_is_a_protocol_error(data: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_payment_required(encode_b64_json(data))


def test_payment_identifier_is_stable_per_key_and_route_and_well_formed() -> None:
    a = payment_identifier_for("task-run-1", URL)
    assert a == payment_identifier_for("task-run-1", URL)
    assert a != payment_identifier_for("task-run-1", "https://stablestudio.dev/api/upload")
    assert a != payment_identifier_for("task-run-2", URL)
    random_ids = {payment_identifier_for(None) for _ in range(5)}
    assert len(random_ids) == 5
    import re

    for pid in [a, *random_ids]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,128}", pid)


def test_money_helpers_are_exact() -> None:
    assert str(dollars_from_atomic(30_000)) == "0.03"
    assert [usd_from_atomic(a) for a in (45_000, 0, 12_000_000)] == ["$0.045", "$0", "$12"]
    assert usd_from_dollars(Decimal("0.0450")) == "$0.045" and usd_cap_from_atomic(None) == "no cap"
    assert usd_exact_from_atomic(30_000) == "$0.030000" and plain_dollars_from_atomic(1_500_000) == "1.5"
    assert atomic_from_dollars("0.01") == 10_000
    with pytest.raises(ValueError):
        atomic_from_dollars(0.01)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        atomic_from_dollars("0.0000001")
