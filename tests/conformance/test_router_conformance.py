"""The client against a stand-in built on the unmodified @agentcash/router (see conftest.py and README.md),
and against the simulator set as the router (the ``server`` fixture runs a test against both).

On the stand-in, payments are verified and settled by the official x402 facilitator over its in-memory token,
so "what moved" is read from its chain, not from our own ledger.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from prefect_stablestudio.client import (
    EditRequest,
    InvalidRequest,
    PaymentOutcomeUnknown,
    PolicyRefused,
    StableStudioClient,
    WalletPolicy,
)
from tests.conformance.standin import RouterStandin, Server, new_key, png

EDIT_PATH = "/api/generate/flux-2-pro/edit"


def client(server: Server | RouterStandin, key: str, **kw: Any) -> StableStudioClient:
    return StableStudioClient(key, base_url=server.base_url, blob_api_url=server.blob_api_url, **kw)


def decode_header(value: str) -> Any:
    return json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))


@pytest.mark.parametrize("siwx_mode", ["auto", "challenge"])
async def test_upload_edit_wait_and_download_pay_exactly_the_quotes(server: Server, siwx_mode: Any) -> None:
    key, address = new_key()
    source = png()
    async with client(server, key, siwx_mode=siwx_mode) as c:
        uploaded = await c.upload_detailed(source)
        job = await c.submit_edit(EditRequest(prompt="make it snow", images=[uploaded.blob_url]))
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        assert result.image_url is not None
        data = await c.download(result.image_url)
    if server.name == "router":
        assert data == source  # the stand-in's "edit" returns the input: the protocol is what is checked
    else:
        assert Image.open(io.BytesIO(data)).format == "WEBP"
    assert job.settlement is not None and job.settlement.success and job.payment is not None
    assert server.paid_by(address) == [10_000, 45_000]
    assert server.nonces_of(address) == {uploaded.payments[0].nonce.lower(), job.payment.nonce.lower()}


async def test_a_rerun_of_the_edit_flow_pays_nothing(
    router_standin: RouterStandin, prefect_api: str, make_wallet: Any, tmp_path: Any
) -> None:
    from prefect_stablestudio.flows import edit_image

    source = tmp_path / "cat.png"
    source.write_bytes(png())
    name, wallet, _ = await make_wallet(router_standin)
    kwargs: dict[str, Any] = dict(
        wallet_block=name,
        expected_job_seconds=0.3,
        image=str(source),
        prompt="make it snow",
        destination=str(tmp_path / "out") + "/",
        intent_store_url=str(tmp_path / "intents"),
    )
    first = await edit_image(**kwargs)
    assert first.status == "complete" and first.paid_now
    again = await edit_image(**kwargs)
    assert again.status == "complete" and not again.paid_now and again.job_id == first.job_id
    assert router_standin.transfers_from(wallet.address) == [10_000, 45_000]


async def test_a_replayed_payment_moves_no_money_and_names_the_official_code(server: Server) -> None:
    key, address = new_key()
    async with client(server, key) as c:
        url = await c.upload(png())
        request = EditRequest(prompt="p", images=[url], resolution="0.5 MP")
        job = await c.submit_edit(request)
        assert job.payment is not None
        # The router answers the replay with the facilitator's code in `reason` and a fresh quote.
        replay = httpx.post(
            f"{server.base_url}{EDIT_PATH}",
            content=json.dumps(request.body()),
            headers={"content-type": "application/json", **job.payment.request_headers},
        )
        assert replay.status_code == 402
        assert replay.json()["reason"] == "invalid_exact_evm_nonce_already_used"
        assert "error" not in decode_header(replay.headers["payment-required"])
        # The client re-sending the same payment is refused the same way and never pays twice. It then looks
        # for what the payment bought in GET /api/jobs, which the simulator serves and the stand-in does not
        # (StableStudio documents the list only under its old /api/x402/ paths).
        if server.name == "simulator":
            again = await c.submit_edit(request, payment=job.payment)
            assert again.resumed and again.job_id == job.job_id
        else:
            with pytest.raises(PaymentOutcomeUnknown, match="nonce_already_used"):
                await c.submit_edit(request, payment=job.payment)
    assert server.paid_by(address) == [10_000, 30_000]


async def test_an_implausible_price_is_refused_before_signing_whatever_the_cap(
    router_standin: RouterStandin,
) -> None:
    """Needs the client's plausibility check (issue 20): a $9 quote for a ~$0.05 edit under a $20 cap."""
    key, address = new_key()
    policy = WalletPolicy(max_amount_per_call=20_000_000)
    async with client(router_standin, key, policy=policy) as c:
        url = await c.upload(png())
        router_standin.set_edit_price("9")
        try:
            with pytest.raises(PolicyRefused) as refused:
                await c.submit_edit(EditRequest(prompt="p", images=[url]))
        finally:
            router_standin.set_edit_price(None)
        assert refused.value.reason == "implausible_price"
        assert c.stats.payments_signed == 1  # the upload only
    assert router_standin.transfers_from(address) == [10_000]


async def test_a_body_the_router_would_quote_at_max_price_is_refused_locally(server: Server) -> None:
    """Needs the client's local validation (issue 20): the router quotes $10 for a body it cannot parse."""
    key, address = new_key()
    policy = WalletPolicy(max_amount_per_call=20_000_000)
    async with client(server, key, policy=policy) as c:
        with pytest.raises(InvalidRequest):
            await c.submit_edit(EditRequest(prompt="p", images=["not-a-url"]))
        with pytest.raises(InvalidRequest):
            await c.upload(png(), filename="a/b.png")
        assert c.stats.payments_signed == 0
        assert sum(c.stats.requests.values()) == 0  # refused before any network call
    assert server.paid_by(address) == []


async def test_a_400_after_a_signed_payment_is_invalid_request_with_the_issues(server: Server) -> None:
    """Needs the client's reading of a signed 400 (issue 20). The upload is static-priced, so the router
    quotes without reading the body and validates it after the signed request arrives, before settling:
    a size over the server's limit (which the client cannot know) is refused then, and no money moves."""
    key, address = new_key()
    big = png() + bytes(9 * 1024 * 1024)  # PNG magic, 9 MiB: over the servers' 8 MiB schema limit
    async with client(server, key) as c:
        with pytest.raises(InvalidRequest) as refused:
            await c.upload(big)
        assert c.stats.payments_signed == 1
    assert [issue["path"] for issue in refused.value.issues] == [["size"]]
    assert server.paid_by(address) == [] and server.nonces_of(address) == set()
