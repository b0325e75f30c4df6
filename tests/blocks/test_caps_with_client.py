"""Caps as the client meets them: per call, refunds of rejected payments, races for the last dollar."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from prefect_stablestudio.blocks.budget import SpendBudget, SpendCapExceeded
from prefect_stablestudio.client.errors import PaymentRejected, PolicyRefused
from prefect_stablestudio.client.models import EditRequest
from prefect_stablestudio.flows import submit_edit
from prefect_stablestudio.flows.intents import intent_key
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


async def test_twenty_clients_racing_for_a_lifetime_cap_of_five_edits(sim: Any, make_wallet: Any) -> None:
    _, wallet, _ = await make_wallet(sim, max_usd_total="0.225")  # five 1 MP edits at $0.045
    async with wallet.get_client(enforce_budget=False) as uploader:
        blob = await uploader.upload(png_bytes(), filename="race.png")

    async def submit(i: int) -> str:
        async with wallet.get_client() as client:  # one client each, as separate tasks would have
            job = await client.submit_edit(EditRequest(prompt=f"variation {i}", images=[blob]))
            return job.job_id

    results = await asyncio.gather(*(submit(i) for i in range(20)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, SpendCapExceeded)]
    assert len([r for r in results if isinstance(r, str)]) == 5
    assert len(refused) == 15 and all(r.cap_name == "lifetime" for r in refused)
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 5


async def test_twenty_submitted_tasks_on_their_own_loops_share_the_per_run_cap(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim, max_usd_per_run="0.225")
    async with wallet.get_client(enforce_budget=False) as uploader:
        blob = await uploader.upload(png_bytes((0, 99, 0)), filename="race.png")
    store = str(tmp_path / "intents")

    @flow
    async def racer() -> list[Any]:
        futures = [
            submit_edit.submit(
                name,
                EditRequest(prompt=f"variation {i}", images=[blob]),
                intent_key("flux-2-pro/edit", wallet.address, inputs=[], params={"i": i}),
                intent_store=store,
            )
            for i in range(20)
        ]
        return [f.state for f in futures if f.wait() is None]

    states = await racer()
    failed = [s for s in states if s.is_failed()]
    assert len([s for s in states if s.is_completed()]) == 5 and len(failed) == 15
    assert all("per flow run cap" in (s.message or "") for s in failed)
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 5


async def test_the_per_call_cap_refuses_exactly_above_its_boundary(sim: Any, make_wallet: Any) -> None:
    _, at_cap, _ = await make_wallet(sim, max_usd_per_call="0.045")  # a 1 MP edit costs exactly $0.045
    _, below, _ = await make_wallet(sim, max_usd_per_call="0.044999")
    blobs = {}
    for wallet in (at_cap, below):
        async with wallet.get_client(enforce_budget=False) as uploader:
            blobs[wallet.address] = await uploader.upload(png_bytes(), filename="cap.png")
    async with at_cap.get_client() as client:
        await client.submit_edit(EditRequest(prompt="at the cap", images=[blobs[at_cap.address]]))
    async with below.get_client() as client:
        with pytest.raises(PolicyRefused) as info:
            await client.submit_edit(EditRequest(prompt="over", images=[blobs[below.address]]))
        assert client.stats.payments_signed == 0
    assert info.value.reason == "amount_over_cap" and "per-call cap $0.044999" in str(info.value)
    assert len(payments(sim, at_cap.address, EDIT_ROUTE)) == 1
    assert payments(sim, below.address, EDIT_ROUTE) == []


async def test_a_rejected_payment_gives_its_reservation_back(make_sim: Any, make_wallet: Any) -> None:
    sim = make_sim(default_balance=0)  # every unfunded wallet is refused: the balance is too low
    _, wallet, _ = await make_wallet(sim, max_usd_total="0.10")
    async with wallet.get_client() as client:
        with pytest.raises(PaymentRejected) as info:
            await client.upload(png_bytes(), filename="broke.png")
    # The official code, which the router's dialect puts in `reason` and repeats in `error`'s prose (a client
    # reading `error` carries the prose; one reading `reason`, issue 20, the code alone).
    assert "invalid_exact_evm_insufficient_balance" in info.value.reason
    budget = SpendBudget(wallet.address, lifetime=100_000)
    assert await budget.remaining() == {"lifetime": 100_000}  # reserved before signing, refunded after
