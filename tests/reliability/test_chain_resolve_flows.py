"""A rerun of the submit task meets a payment whose outcome was ambiguous, and asks the chain (the wallet's
`base_rpc_url`: the simulator's Base RPC, which reads the simulator's own ledger). The payment record says
what the chain said; the simulator's ledger proves the edit is paid exactly once."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.client import EditRequest, PaymentOutcome, PaymentUnrecovered, StableStudioClient
from prefect_stablestudio.client.keys import load_signer
from prefect_stablestudio.client.x402 import sign_payment
from prefect_stablestudio.flows import IntentStore, PaymentIntent
from prefect_stablestudio.flows.receipts import Receipt, ReceiptBook
from prefect_stablestudio.flows.tasks import submit_edit
from prefect_stablestudio.simulator import FaultRule
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


async def setup(make_sim: Any, prompt: str) -> tuple[Any, StableStudioWallet, str, EditRequest]:
    sim = make_sim()
    key = "0x" + bytes(Account.create().key).hex()
    wallet = StableStudioWallet(
        private_key=key,
        base_url=sim.base_url,
        blob_api_url=sim.blob_api_url,
        base_rpc_url=f"{sim.base_url}/_sim/rpc/base",
    )
    async with StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url) as client:
        url = await client.upload(png_bytes())
    return sim, wallet, key, EditRequest(prompt=prompt, images=[url])


async def test_a_rerun_replaces_an_expired_unused_payment_once_and_records_it(
    make_sim: Any, tmp_path: Path
) -> None:
    sim, wallet, key, request = await setup(make_sim, "expired")
    async with StableStudioClient(key, base_url=sim.base_url) as client:
        quote = await client.quote_edit(request)
    assert quote is not None
    # A payment signed, persisted as "unknown" and never delivered, found an hour after it expired (waiting
    # out a real validity window would only be slower). The record is written as a version without the chain
    # fields wrote it: old records on disk stay readable.
    old = sign_payment(
        load_signer(key), quote, now=time.time() - 3600 - quote.requirement.max_timeout_seconds
    )
    idempotency_key = hashlib.sha256(b"expired-edit").hexdigest()
    record = PaymentIntent(
        key=idempotency_key,
        wallet=wallet.public_address,
        status="unknown",
        request=request.body(),
        payment=old,
    )
    (tmp_path / f"{idempotency_key}.json").write_text(
        record.model_dump_json(exclude={"chain_state", "chain_nonce"})
    )
    store = IntentStore(str(tmp_path))
    before = await store.get(idempotency_key)
    assert before is not None and before.payment == old and before.chain_state is None
    # ... and the receipts book has it as "unknown", as the run that lost it wrote it.
    book = ReceiptBook.beside(store)
    lost = PaymentOutcome(status="unknown", reason="no answer after 3 sends")
    await book.append(Receipt.of(old, lost, wallet_block=None, inputs=[]))

    job = await submit_edit(wallet, request, idempotency_key, intent_store=store)

    assert job.paid_now and job.payment is not None and job.payment.nonce != old.nonce
    assert [p["nonce"] for p in payments(sim, wallet.public_address, EDIT_ROUTE)] == [
        job.payment.nonce.lower()
    ]
    after = await store.get(idempotency_key)
    assert after is not None and after.status == "submitted" and after.job_id == job.job_id
    assert (after.chain_state, after.chain_nonce) == ("expired_unused", old.nonce)
    assert after.payment == job.payment
    # The books: the chain proved the old payment void, so it is no longer "unknown" (to reconcile).
    outcomes = {r.nonce: (r.outcome, r.reason) for r in await book.read()}
    assert outcomes == {
        old.nonce: ("rejected", "authorization_expired_unused"),
        job.payment.nonce: ("settled", None),
    }


async def test_a_settled_payment_whose_job_was_not_found_is_recorded_paid_and_never_paid_again(
    make_sim: Any, tmp_path: Path
) -> None:
    sim, wallet, _, request = await setup(make_sim, "settled")
    store = IntentStore(str(tmp_path))
    idempotency_key = hashlib.sha256(b"settled-edit").hexdigest()
    sim.set_faults(
        [
            FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),
            FaultRule(route="jobs", kind="http_5xx", rate=1.0),
        ]
    )
    with pytest.raises(PaymentUnrecovered):
        await submit_edit(wallet, request, idempotency_key, intent_store=store)
    (paid,) = payments(sim, wallet.public_address, EDIT_ROUTE)
    lost = await store.get(idempotency_key)
    assert lost is not None and lost.payment is not None and lost.job_id is None
    assert (lost.chain_state, lost.chain_nonce) == ("settled", lost.payment.nonce)
    assert paid["nonce"] == lost.payment.nonce.lower()
    assert "money moved" in (lost.reason or "")

    sim.set_faults([])
    replays = sim.state()["counters"]["replays_refused"]
    job = await submit_edit(wallet, request, idempotency_key, intent_store=store)
    assert not job.paid_now and job.payment == lost.payment
    assert len(payments(sim, wallet.public_address, EDIT_ROUTE)) == 1
    assert sim.state()["counters"]["replays_refused"] == replays  # found, not re-sent
    found = await store.get(idempotency_key)
    assert found is not None and found.status == "submitted" and found.job_id == job.job_id
