"""Spend caps on Prefect's server: boundaries, atomicity, refunds, idempotent creation, run-limit cleanup."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from eth_account import Account
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

from prefect_stablestudio.blocks.budget import (
    SpendBudget,
    SpendCapExceeded,
    current_flow_run_id,
    day_limit_name,
    release_run_budget,
    run_limit_name,
    total_limit_name,
)
from prefect_stablestudio.blocks.payment_guard import PaymentGuard
from prefect_stablestudio.blocks.run_float import RUN_FLOAT
from prefect_stablestudio.client.payment import NoHooks

pytestmark = pytest.mark.usefixtures("prefect_api")


def fresh_address() -> str:
    return Account.create().address


async def test_lifetime_cap_refuses_exactly_past_its_boundary() -> None:
    budget = SpendBudget(fresh_address(), lifetime=100_000)
    await budget.reserve(60_000)
    await budget.reserve(40_000)  # exactly at the cap: allowed
    with pytest.raises(SpendCapExceeded) as info:
        await budget.reserve(1)
    err = info.value
    assert (err.cap_name, err.cap, err.asked, err.remaining) == ("lifetime", 100_000, 1, 0)
    assert "lifetime cap of $0.100000" in str(err) and "asked $0.000001" in str(err)


async def test_per_run_cap_refuses_exactly_past_its_boundary() -> None:
    run_id = str(uuid.uuid4())
    budget = SpendBudget(fresh_address(), per_run=30_000, flow_run_id=run_id)
    assert budget.names == [run_limit_name(budget.address, run_id)]
    await budget.reserve(30_000)
    with pytest.raises(SpendCapExceeded) as info:
        await budget.reserve(10_000)
    assert (info.value.cap_name, info.value.remaining) == ("per flow run", 0)
    # Another flow run of the same wallet has its own allowance.
    other = SpendBudget(budget.address, per_run=30_000, flow_run_id=str(uuid.uuid4()))
    await other.reserve(30_000)


async def test_rolling_day_cap_refuses_past_its_boundary() -> None:
    budget = SpendBudget(fresh_address(), per_day=100_000)
    await budget.reserve(100_000)  # the whole day's allowance at once
    with pytest.raises(SpendCapExceeded) as info:
        await budget.reserve(10_000)
    assert info.value.cap_name == "rolling 24 h"
    # The day cap replenishes at cap/86400 per second, so at most a few micro-dollars came back meanwhile.
    assert 0 <= info.value.remaining < 10_000


async def test_a_call_larger_than_a_cap_is_refused_and_names_it() -> None:
    budget = SpendBudget(fresh_address(), per_day=1_000_000, lifetime=50_000)
    with pytest.raises(SpendCapExceeded) as info:
        await budget.reserve(60_000)
    assert (info.value.cap_name, info.value.remaining) == ("lifetime", 50_000)
    assert await budget.remaining() == {"rolling 24 h": 1_000_000, "lifetime": 50_000}


async def test_a_zero_cap_refuses_everything() -> None:
    with pytest.raises(SpendCapExceeded) as info:
        await SpendBudget(fresh_address(), lifetime=0).reserve(1)
    assert info.value.cap_name == "lifetime"


async def test_caps_are_reserved_all_or_nothing() -> None:
    budget = SpendBudget(fresh_address(), per_day=1_000_000, lifetime=50_000)
    await budget.reserve(40_000)
    with pytest.raises(SpendCapExceeded) as info:
        await budget.reserve(20_000)  # the day cap has room, the lifetime cap has not
    assert info.value.cap_name == "lifetime"
    remaining = await budget.remaining()
    assert remaining["lifetime"] == 10_000
    assert 960_000 <= remaining["rolling 24 h"] <= 1_000_000  # untouched by the refused call (decay aside)


async def test_concurrent_reservations_never_overspend() -> None:
    budget = SpendBudget(fresh_address(), lifetime=50_000, per_day=10_000_000)
    results = await asyncio.gather(*(budget.reserve(10_000) for _ in range(20)), return_exceptions=True)
    granted = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, SpendCapExceeded)]
    assert len(granted) == 5 and len(refused) == 15
    assert (await budget.remaining())["lifetime"] == 0


async def test_refund_gives_the_reservation_back() -> None:
    budget = SpendBudget(fresh_address(), lifetime=50_000)
    await budget.reserve(50_000)
    await budget.refund(20_000)
    assert (await budget.remaining())["lifetime"] == 20_000
    await budget.reserve(20_000)


async def test_ensure_is_idempotent_keeps_spend_and_follows_the_caps() -> None:
    address = fresh_address()
    budget = SpendBudget(address, per_day=864_000, lifetime=100_000)
    await budget.ensure()
    await budget.ensure()
    await budget.reserve(30_000)
    async with get_client() as client:
        day = await client.read_global_concurrency_limit_by_name(day_limit_name(address))
        assert (day.limit, day.slot_decay_per_second) == (864_000, 10.0)
        # Someone disables the lifetime cap by hand: ensure() turns it back on, spend intact.
        await client.update_global_concurrency_limit(
            total_limit_name(address), GlobalConcurrencyLimitUpdate(active=False)
        )
    raised = SpendBudget(address, per_day=864_000, lifetime=200_000)
    await raised.ensure()
    async with get_client() as client:
        total = await client.read_global_concurrency_limit_by_name(total_limit_name(address))
    assert (total.active, total.limit, total.active_slots) == (True, 200_000, 30_000)


async def test_run_limits_follow_the_flow_run_and_are_released_at_the_end() -> None:
    address = fresh_address()
    seen: dict[str, object] = {}

    @flow(on_completion=[release_run_budget], on_failure=[release_run_budget])
    async def spender() -> None:
        run_id = current_flow_run_id()
        assert run_id is not None
        budget = SpendBudget(address, per_run=10_000, flow_run_id=run_id)
        await budget.reserve(10_000)
        seen["name"] = run_limit_name(address, run_id)
        async with get_client() as client:
            seen["during"] = (
                await client.read_global_concurrency_limit_by_name(str(seen["name"]))
            ).active_slots

    await spender()
    assert seen["during"] == 10_000
    async with get_client() as client:
        names = [limit.name for limit in await client.read_global_concurrency_limits(limit=200, offset=0)]
    assert seen["name"] not in names


@pytest.mark.parametrize(
    ("lifetime", "server_counts"),
    [
        # Floats of 8, 16 and 32 payments, then 1 + 50: a 20th of the lifetime cap ($0.50) bounds it.
        (10_000_000, [80_000, 240_000, 560_000, 1_070_000]),
        # A 20th of this cap is 5 payments: the float stays at its first 8.
        (1_000_000, [80_000, 160_000, 240_000, 320_000, 400_000, 480_000, 560_000, 640_000]),
    ],
)
async def test_a_runs_float_doubles_as_it_spends_within_a_share_of_the_shared_caps_and_goes_back(
    lifetime: int, server_counts: list[int]
) -> None:
    address = fresh_address()
    seen: list[int] = []

    @flow(on_completion=[release_run_budget], on_failure=[release_run_budget])
    async def spender() -> None:
        token = RUN_FLOAT.set(True)
        try:
            run_id = current_flow_run_id()
            # Floats belong to a run with its own cap; that cap is the run's alone and does not bound them.
            budget = SpendBudget(address, per_run=100_000_000, lifetime=lifetime, flow_run_id=run_id)
            async with get_client() as client:
                for _ in range(57):  # $0.01 each
                    await budget.reserve(10_000)
                    limit = await client.read_global_concurrency_limit_by_name(total_limit_name(address))
                    if not seen or seen[-1] != limit.active_slots:
                        seen.append(limit.active_slots)
            left = await budget.remaining()
            assert (left["lifetime"], left["per flow run"]) == (lifetime - 570_000, 100_000_000 - 570_000)
        finally:
            RUN_FLOAT.reset(token)

    await spender()
    assert seen == server_counts
    async with get_client() as client:  # the unspent float went back when the run ended
        limit = await client.read_global_concurrency_limit_by_name(total_limit_name(address))
    assert limit.active_slots == 570_000


class _Quote:
    amount = 25_000


class _Payment:
    amount = 25_000


class _PersistenceDown(NoHooks):
    async def after_signing(self, payment: Any) -> None:
        raise OSError("intent store unreachable")


async def test_a_payment_that_could_not_be_persisted_is_not_sent_and_gives_its_reservation_back() -> None:
    budget = SpendBudget(fresh_address(), lifetime=100_000)
    hooks = PaymentGuard(budget, record=_PersistenceDown())
    await hooks.before_signing(_Quote())  # type: ignore[arg-type]
    assert await budget.remaining() == {"lifetime": 75_000}
    with pytest.raises(OSError):
        await hooks.after_signing(_Payment())  # type: ignore[arg-type]
    assert await budget.remaining() == {"lifetime": 100_000}
