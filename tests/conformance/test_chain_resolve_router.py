"""Resolving an ambiguous payment from the chain, against the unmodified @agentcash/router: its official
facilitator settles on the stand-in's in-memory token, and the stand-in serves a Base JSON-RPC over that token
(`/_standin/rpc`). The stand-in has no `GET /api/jobs` (StableStudio documents the list only under its old
/api/x402/ paths), so without the chain a lost reply stays "unknown" for ever."""

from __future__ import annotations

import time

import pytest

from prefect_stablestudio.client import (
    EditRequest,
    PaymentOutcomeUnknown,
    PaymentUnrecovered,
    StableStudioClient,
)
from prefect_stablestudio.client.keys import load_signer
from prefect_stablestudio.client.x402 import sign_payment
from tests.conformance.standin import RouterStandin, new_key, png


def client(standin: RouterStandin, key: str, *, rpc: bool) -> StableStudioClient:
    return StableStudioClient(
        key,
        base_url=standin.base_url,
        blob_api_url=standin.blob_api_url,
        resend_backoff=0.01,
        base_rpc_url=f"{standin.base_url}/_standin/rpc" if rpc else None,
    )


async def test_a_settled_payment_is_known_settled_from_the_chain_and_never_sent_again(
    router_standin: RouterStandin,
) -> None:
    key, address = new_key()
    async with client(router_standin, key, rpc=False) as c:
        request = EditRequest(prompt="p", images=[await c.upload(png())], resolution="0.5 MP")
        job = await c.submit_edit(request)
    assert job.payment is not None
    # Its reply lost, a rerun re-sends the payment. Without the chain: the router's replay refusal, no list to
    # look in, "unknown". With it: settled, and the used authorization is not even sent.
    async with client(router_standin, key, rpc=False) as c:
        with pytest.raises(PaymentOutcomeUnknown) as unknown:
            await c.submit_edit(request, payment=job.payment)
    assert not isinstance(unknown.value, PaymentUnrecovered)
    async with client(router_standin, key, rpc=True) as c:
        with pytest.raises(PaymentUnrecovered, match="money moved"):
            await c.submit_edit(request, payment=job.payment)
        assert c.stats.requests["generate"] == 0 and c.stats.payments_signed == 0
    assert router_standin.transfers_from(address) == [10_000, 30_000]


async def test_an_expired_unused_payment_is_replaced_by_one_new_payment_the_facilitator_settles(
    router_standin: RouterStandin,
) -> None:
    key, address = new_key()
    async with client(router_standin, key, rpc=False) as c:
        request = EditRequest(prompt="p", images=[await c.upload(png())], resolution="0.5 MP")
        quote = await c.quote_edit(request)
        assert quote is not None
        # Signed, persisted, never delivered, found an hour after it expired.
        stale = time.time() - 3600 - quote.requirement.max_timeout_seconds
        old = sign_payment(load_signer(key), quote, now=stale)
        # Without the chain: the facilitator refuses it as expired, the client cannot tell that nothing moved.
        signed = c.stats.payments_signed  # the upload's
        with pytest.raises(PaymentOutcomeUnknown, match="valid_before"):
            await c.submit_edit(request, payment=old)
        assert c.stats.payments_signed == signed
    async with client(router_standin, key, rpc=True) as c:
        job = await c.submit_edit(request, payment=old)
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        assert c.stats.payments_signed == 1
    assert result.image_url is not None
    assert job.payment is not None and job.payment.nonce != old.nonce
    assert router_standin.transfers_from(address) == [10_000, 30_000]
    used = router_standin.chain()["usedNonces"]
    assert f"{address.lower()}:{job.payment.nonce.lower()}" in used
    assert not [n for n in used if n.endswith(old.nonce.lower())]
