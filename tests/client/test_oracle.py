"""The reference x402 SDK as an independent oracle for what the client signs and parses."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402ResourceServerSync
from x402.extensions.payment_identifier import declare_payment_identifier_extension
from x402.extensions.sign_in_with_x import (
    DeclareSIWxOptions,
    declare_siwx_extension,
    parse_siwx_header,
    validate_siwx_message,
    verify_siwx_signature,
)
from x402.extensions.sign_in_with_x.evm import format_siwe_message
from x402.http.utils import decode_payment_signature_header, encode_payment_required_header
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import PaymentRequirements, ResourceInfo

from prefect_stablestudio.client import WalletPolicy
from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
from prefect_stablestudio.client.signer import Signer
from prefect_stablestudio.client.siwx import client_nonce_info, eip4361_message, encode_proof, sign_proof
from prefect_stablestudio.client.x402 import Quote, choose_requirement, decode_payment_required, sign_payment
from tests.client.helpers import PAY_TO, assert_payment_verifies, payment_required, quote_for, requirement

URL = "https://stablestudio.dev/api/generate/flux-2-pro/edit"


@pytest.fixture(params=["Signer", "LocalAccount"])
def account(request: pytest.FixtureRequest) -> Signer | LocalAccount:
    """A fresh wallet in both forms the signing functions take (the client signs with a `Signer`)."""
    local = Account.create()
    return Signer.from_account(local) if request.param == "Signer" else local


def sdk_payment_required_header(price: str, extensions: dict[str, object] | None = None) -> str:
    """A PAYMENT-REQUIRED header made by the SDK's server side (its default asset table, its encoder)."""
    scheme = ExactEvmServerScheme()
    asset = scheme.parse_price(price, "eip155:8453")
    req = PaymentRequirements(
        scheme="exact",
        network="eip155:8453",
        asset=asset.asset,
        amount=asset.amount,
        pay_to=PAY_TO,
        max_timeout_seconds=300,
        extra=asset.extra,
    )
    server = x402ResourceServerSync([])
    pr = server.create_payment_required_response(
        [req],
        ResourceInfo(url=URL, description="Flux 2 Pro edit", mime_type="application/json"),
        error="Payment required",
        extensions=extensions,
    )
    return encode_payment_required_header(pr)


def test_client_parses_an_sdk_made_payment_required_and_signs_what_the_sdk_verifies(
    account: Signer | LocalAccount,
) -> None:
    pr = decode_payment_required(sdk_payment_required_header("$0.03"))
    req = choose_requirement(pr, WalletPolicy())
    assert req.amount == 30_000
    quote = Quote(
        requirement=req, payment_required=pr, resource_url=URL, body_sha256=hashlib.sha256(b"{}").hexdigest()
    )
    payment = sign_payment(account, quote)
    assert_payment_verifies(payment.header, account.address, 30_000, PAY_TO)
    payload = decode_payment_signature_header(payment.header)
    assert payload.x402_version == 2
    assert payload.accepted.model_dump(by_alias=True, exclude_none=True) == req.raw
    assert payload.resource is not None and payload.resource.url == URL
    assert payment.nonce == payload.payload["authorization"]["nonce"]


def test_each_signature_uses_a_fresh_nonce(account: Signer | LocalAccount) -> None:
    pr = decode_payment_required(encode_b64_json(payment_required(URL, [requirement()])))
    quote = quote_for(pr, URL)
    nonces = {sign_payment(account, quote).nonce for _ in range(5)}
    assert len(nonces) == 5


def test_extensions_are_echoed_and_payment_identifier_added_when_advertised(
    account: Signer | LocalAccount,
) -> None:
    siwx = declare_siwx_extension(DeclareSIWxOptions(network="eip155:8453"))
    header = sdk_payment_required_header(
        "$0.01", {"payment-identifier": declare_payment_identifier_extension(), "sign-in-with-x": siwx}
    )
    pr = decode_payment_required(header)
    quote = quote_for(pr, URL)
    payment = sign_payment(account, quote, payment_identifier="pay_0123456789abcdef")
    payload = decode_b64_json(payment.header)
    assert payload["extensions"]["payment-identifier"]["info"] == {
        "required": False,
        "id": "pay_0123456789abcdef",
    }
    assert payload["extensions"]["sign-in-with-x"] == pr.extensions["sign-in-with-x"]
    assert payment.payment_identifier == "pay_0123456789abcdef"
    assert_payment_verifies(payment.header, account.address, 10_000, PAY_TO)


def test_payment_identifier_is_not_sent_when_not_advertised(account: Signer | LocalAccount) -> None:
    pr = decode_payment_required(sdk_payment_required_header("$0.01"))
    quote = quote_for(pr, URL)
    payment = sign_payment(account, quote, payment_identifier="pay_0123456789abcdef")
    assert payment.payment_identifier is None
    assert "payment-identifier" not in (decode_b64_json(payment.header)["extensions"] or {})


@pytest.mark.parametrize("with_statement", [True, False])
def test_eip4361_text_matches_the_sdk(with_statement: bool) -> None:
    address = Account.create().address
    fields = client_nonce_info("https://stablestudio.dev/api/jobs/x")
    if not with_statement:
        del fields["statement"]
    fields["resources"] = ["https://stablestudio.dev/api/jobs/x"]
    assert eip4361_message(fields, address) == format_siwe_message(fields, address)


async def test_client_nonce_proof_passes_the_sdk_siwx_checks(account: Signer | LocalAccount) -> None:
    url = "http://127.0.0.1:8123/api/jobs/abc"
    header = encode_proof(sign_proof(account, client_nonce_info(url)))
    payload = parse_siwx_header(header)
    validation = await validate_siwx_message(payload, "http://127.0.0.1:8123")
    assert validation.is_valid, validation.invalid_message
    verified = await verify_siwx_signature(payload)
    assert verified.is_valid and verified.payer == account.address


async def test_challenge_proof_passes_the_sdk_siwx_checks(account: Signer | LocalAccount) -> None:
    url = "https://stablestudio.dev/api/jobs/abc"
    challenge = client_nonce_info(url)
    challenge["issuedAt"] = challenge["issuedAt"].replace("Z", "123Z")  # microseconds, as Python servers emit
    proof = sign_proof(account, challenge)
    assert proof["issuedAt"] == challenge["issuedAt"]
    payload = parse_siwx_header(encode_proof(proof))
    assert (await validate_siwx_message(payload, "https://stablestudio.dev")).is_valid
    assert (await verify_siwx_signature(payload)).payer == account.address
    tampered = parse_siwx_header(encode_proof({**proof, "nonce": "f" * 32}))
    assert not (await verify_siwx_signature(tampered)).is_valid
