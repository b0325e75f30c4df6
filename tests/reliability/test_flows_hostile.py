"""Hostile quotes seen through the Prefect tasks, with the payment-intent store in the loop."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from blocks import StableStudioWallet
from flows import IntentStore
from flows.tasks import submit_edit
from stablestudio import EditRequest, PaymentRejected, PolicyRefused
from tests.core.fake_studio import FakeStudio
from tests.core.helpers import PAY_TO, requirement
from tests.reliability.test_hostile import OTHER_PAY_TO, requote_with

pytestmark = pytest.mark.usefixtures("prefect_api")
REQUEST = EditRequest(prompt="make it snow", images=["https://b.example/x.png"])


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


@pytest.mark.xfail(
    strict=True,
    reason="flows bug (reported): after a refused payment a rerun signs anew for whatever payTo the server "
    "now quotes, silently, unless the wallet has a payTo allow-list",
)
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
    with pytest.raises(PolicyRefused, match="payTo"):
        await submit_edit(wallet, REQUEST, key, intent_store=store)
    assert len(fake.signatures) == 1
