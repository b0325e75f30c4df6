"""The wallet Block's payment method: MPP charges on Tempo under the same spend caps and intent records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.budget import SpendCapExceeded
from prefect_stablestudio.client.models import EditRequest
from prefect_stablestudio.client.policy import TEMPO_USDC_E
from prefect_stablestudio.flows import submit_edit
from prefect_stablestudio.flows.intents import intent_key
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes


def test_the_block_maps_its_mpp_fields_into_the_policy(payer_key: str) -> None:
    wallet = StableStudioWallet(
        private_key=payer_key, payment_method="auto", mpp_recipients=["0xAbC"], mpp_chain_ids=[42431]
    )
    policy = wallet.policy()
    assert policy.payment_method == "auto"
    assert policy.mpp_recipients == frozenset({"0xabc"})
    assert policy.mpp_chain_ids == frozenset({42431})
    assert policy.mpp_currencies == frozenset({TEMPO_USDC_E.lower()})
    assert StableStudioWallet(private_key=payer_key).policy().payment_method == "x402"


def test_from_env_reads_the_mpp_settings(payer_key: str) -> None:
    wallet = StableStudioWallet.from_env(
        {
            "STABLESTUDIO_PRIVATE_KEY": payer_key,
            "STABLESTUDIO_PAYMENT_METHOD": "mpp",
            "STABLESTUDIO_TEMPO_RPC_URL": "http://127.0.0.1:9/rpc",
            "STABLESTUDIO_MPP_CHAIN_IDS": "4217, 42431",
            "STABLESTUDIO_MPP_RECIPIENTS": "0xAbC",
        }
    )
    assert wallet.payment_method == "mpp" and wallet.tempo_rpc_url == "http://127.0.0.1:9/rpc"
    assert wallet.policy().mpp_chain_ids == frozenset({4217, 42431})
    assert wallet.policy().mpp_recipients == frozenset({"0xabc"})


@pytest.mark.usefixtures("prefect_api")
async def test_mpp_wallet_pays_on_tempo_once_per_key_within_the_caps(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    _, wallet, _ = await make_wallet(
        sim,
        payment_method="mpp",
        tempo_rpc_url=f"{sim.base_url}/_sim/tempo-rpc",
        max_usd_total="0.055",  # one upload ($0.01) and one 1 MP edit ($0.045)
    )
    async with wallet.get_client() as client:
        blob = await client.upload(png_bytes(), filename="tempo.png")
    store = str(tmp_path / "intents")
    key = intent_key("flux-2-pro/edit", wallet.address, inputs=[], params={"p": "tempo"})
    request = EditRequest(prompt="tempo", images=[blob])
    over = intent_key("flux-2-pro/edit", wallet.address, inputs=[], params={"p": "over"})

    @flow
    async def edits() -> tuple[str, str, BaseException | None]:
        first = await submit_edit(wallet, request, key, intent_store=store)
        again = await submit_edit(wallet, request, key, intent_store=store)  # a rerun: no new payment
        try:
            await submit_edit(wallet, EditRequest(prompt="over", images=[blob]), over, intent_store=store)
        except SpendCapExceeded as exc:
            return first.job_id, again.job_id, exc
        return first.job_id, again.job_id, None

    first_id, again_id, refused = await edits()
    assert again_id == first_id and isinstance(refused, SpendCapExceeded)
    paid = payments(sim, wallet.address, EDIT_ROUTE)
    assert [(p["amount"], p["network"]) for p in paid] == [(45_000, "tempo:4217")]
    assert len(payments(sim, wallet.address)) == 2
