"""Hostile quotes seen through the Prefect tasks, with the payment-intent store in the loop."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.client import PaymentRejected, PolicyRefused, Quote, Requirement
from prefect_stablestudio.client.x402 import payment_required_from_json
from prefect_stablestudio.flows import IntentStore
from prefect_stablestudio.flows.intents import PaymentTerms
from prefect_stablestudio.flows.tasks import submit_edit
from tests.client.fake_studio import FakeStudio
from tests.client.helpers import EDIT_REQUEST as REQUEST
from tests.client.helpers import PAY_TO, USDC, payment_required, requirement
from tests.reliability.helpers import OTHER_PAY_TO, requote_with

pytestmark = pytest.mark.usefixtures("prefect_api")


def wallet_for(base_url: str) -> StableStudioWallet:
    return StableStudioWallet(private_key="0x" + bytes(Account.create().key).hex(), base_url=base_url)


async def test_a_rerun_after_an_unknown_outcome_never_signs_for_a_new_payto(
    serve_app: Any, tmp_path: Path
) -> None:
    fake = FakeStudio()

    async def lost(request: Any, n: int) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": "boom"}, status_code=500)

    fake.paid_behaviour = lost
    wallet = wallet_for(serve_app(fake.app()))
    store = IntentStore(str(tmp_path))
    key = hashlib.sha256(b"edit-1").hexdigest()
    with pytest.raises(Exception, match="outcome unknown"):
        await submit_edit(wallet, REQUEST, key, intent_store=store)
    first = await store.get(key)
    assert first is not None and first.status == "unknown" and first.payment is not None

    fake.accepts = [requirement(payTo=OTHER_PAY_TO)]
    fake.paid_behaviour = requote_with(OTHER_PAY_TO, "invalid_exact_evm_payload_recipient_mismatch")
    with pytest.raises(Exception, match="recipient_mismatch"):
        await submit_edit(wallet, REQUEST, key, intent_store=store)
    assert set(fake.signatures) == {first.payment.nonce}  # only ever the one authorization, re-sent
    after = await store.get(key)
    assert after is not None and after.status == "unknown" and after.payment == first.payment


async def test_a_rerun_after_a_refusal_does_not_silently_pay_a_new_recipient(
    serve_app: Any, tmp_path: Path
) -> None:
    fake = FakeStudio()
    fake.paid_behaviour = requote_with(OTHER_PAY_TO, "invalid_exact_evm_payload_recipient_mismatch")
    wallet = wallet_for(serve_app(fake.app()))
    store = IntentStore(str(tmp_path))
    key = hashlib.sha256(b"edit-2").hexdigest()
    with pytest.raises(PaymentRejected):
        await submit_edit(wallet, REQUEST, key, intent_store=store)
    refused = await store.get(key)
    assert refused is not None and refused.status == "rejected" and refused.payment is not None
    assert refused.payment.pay_to == PAY_TO

    # The server now quotes another recipient: the record of this edit says it was going to PAY_TO.
    fake.accepts = [requirement(payTo=OTHER_PAY_TO)]
    fake.paid_behaviour = None
    with pytest.raises(PolicyRefused, match="payTo") as refused_again:
        await submit_edit(wallet, REQUEST, key, intent_store=store)
    assert len(fake.signatures) == 1
    assert refused_again.value.reason == "pay_to_changed"
    message = str(refused_again.value)
    assert PAY_TO in message and OTHER_PAY_TO in message and "idempotency key" in message
    pinned = await store.get(key)
    assert pinned is not None and pinned.pinned is not None and pinned.pinned.pay_to == PAY_TO
    assert pinned.job_id is None

    # The same server answer under a new key is a deliberate choice: it is paid once.
    new_key = hashlib.sha256(b"edit-2, deliberately again").hexdigest()
    job = await submit_edit(wallet, REQUEST, new_key, intent_store=store)
    assert job.paid_now and job.payment is not None and job.payment.pay_to == OTHER_PAY_TO
    assert len(fake.signatures) == 2


def test_the_pin_covers_recipient_asset_and_network() -> None:
    signed = PaymentTerms(pay_to=PAY_TO, asset=USDC, network="eip155:8453")

    def quote(**overrides: Any) -> Quote:
        wire, url = requirement(**overrides), "http://127.0.0.1/api/upload"
        return Quote(
            requirement=Requirement.from_wire(wire),
            payment_required=payment_required_from_json(payment_required(url, [wire])),
            resource_url=url,
            body_sha256="0" * 64,
        )

    assert signed.differences(quote(payTo=PAY_TO.lower())) == []
    assert signed.differences(quote(payTo=OTHER_PAY_TO)) == [f"payTo {PAY_TO} -> {OTHER_PAY_TO}"]
    other_asset = "0x" + "a" * 40
    assert signed.differences(quote(asset=other_asset)) == [f"asset {USDC} -> {other_asset}"]
    assert signed.differences(quote(network="eip155:1")) == ["network eip155:8453 -> eip155:1"]
