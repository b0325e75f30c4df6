"""Resolving an ambiguous payment from the chain (EIP-3009 `authorizationState`), against the simulator.

The simulator settles payments in its ledger and serves a Base JSON-RPC (`/_sim/rpc/base`) that reads the same
ledger: a nonce is "used" there exactly when the simulator took the money. Replies are lost with its fault
plan (a connection reset before or after settlement, a failing job list), never with mocks. The ledger proves
"never pay twice"; the client's counters prove "no new signature".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prefect_stablestudio.client import (
    EditRequest,
    NoHooks,
    Payment,
    PaymentOutcome,
    PaymentOutcomeUnknown,
    PaymentUnrecovered,
    StableStudioClient,
)
from prefect_stablestudio.client.chain import authorization_verdict, judge_authorization
from prefect_stablestudio.client.errors import RpcError
from prefect_stablestudio.client.keys import load_signer
from prefect_stablestudio.client.paying import EXPIRED_UNUSED
from prefect_stablestudio.client.policy import BASE_USDC
from prefect_stablestudio.client.x402 import sign_payment
from prefect_stablestudio.simulator import FaultRule
from tests.client.helpers import image_bytes

EDIT = "flux-2-pro/edit"


class Recorder(NoHooks):
    """Every signature and outcome the client reports."""

    def __init__(self) -> None:
        self.signed: list[Payment] = []
        self.outcomes: list[tuple[str, PaymentOutcome]] = []

    async def after_signing(self, payment: Payment) -> None:
        self.signed.append(payment)

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        self.outcomes.append((payment.nonce, outcome))


def rpc_of(sim: Any) -> str:
    return f"{sim.base_url}/_sim/rpc/base"


def client(sim: Any, key: str, hooks: Recorder | None = None, *, rpc: bool = True) -> StableStudioClient:
    return StableStudioClient(
        key,
        base_url=sim.base_url,
        blob_api_url=sim.blob_api_url,
        hooks=hooks,
        resend_backoff=0.01,
        base_rpc_url=rpc_of(sim) if rpc else None,
    )


def edit_payments(sim: Any, address: str) -> list[dict[str, Any]]:
    payments = sim.state()["ledger"]["payments"]
    return [p for p in payments if p["payer"].lower() == address.lower() and p["route"] == EDIT]


async def uploaded_request(sim: Any, key: str, prompt: str) -> EditRequest:
    async with client(sim, key, rpc=False) as c:
        return EditRequest(prompt=prompt, images=[await c.upload(image_bytes())])


@pytest.mark.parametrize(
    ("used", "valid_before", "now", "state"),
    [
        (True, 1_000, 10.0, "settled"),  # used before it expired
        (True, 1_000, 9_999.0, "settled"),  # used is used, whenever read
        (False, 1_000, 999.0, "still_valid"),
        (False, 1_000, 999.999, "still_valid"),
        (False, 1_000, 1_000.0, "expired_unused"),  # EIP-3009 requires now < validBefore
        (None, 1_000, 9_999.0, "unknown"),
    ],
)
def test_the_decision_table(used: bool | None, valid_before: int, now: float, state: str) -> None:
    assert judge_authorization(used, valid_before, now) == state


def block_rpc(timestamp: int, used: bool) -> Starlette:
    """An RPC whose latest block is stamped `timestamp` and whose token says `used` for every nonce."""

    async def rpc(request: Request) -> Response:
        call = json.loads(await request.body())
        if call["method"] == "eth_getBlockByNumber":
            assert call["params"] == ["safe", False]  # a block no reorganisation can undo
            result: Any = {"number": "0x10", "timestamp": hex(timestamp)}
        else:
            assert call["params"][1] == "0x10"  # the state is read at the block whose time judges it
            result = "0x" + ("1" if used else "0").rjust(64, "0")
        return JSONResponse({"jsonrpc": "2.0", "id": call["id"], "result": result})

    return Starlette(routes=[Route("/", rpc, methods=["POST"])])


async def test_expiry_is_judged_by_the_chains_clock_not_this_machines(serve_app: Any) -> None:
    # A node whose latest block is an hour old (a lagging node, or a fast local clock): an authorization that
    # expired half an hour ago by this machine's clock may still settle on chain, so it is still valid.
    now = int(time.time())
    owner, nonce = "0x" + "ab" * 20, "0x" + "11" * 32
    lagging = serve_app(block_rpc(now - 3600, used=False))
    assert await authorization_verdict(lagging, BASE_USDC.address, owner, nonce, now - 1800) == "still_valid"
    current = serve_app(block_rpc(now, used=False))
    assert (
        await authorization_verdict(current, BASE_USDC.address, owner, nonce, now - 1800) == "expired_unused"
    )


async def test_a_block_without_a_timestamp_is_an_rpc_error(serve_app: Any) -> None:
    async def rpc(request: Request) -> Response:
        call = json.loads(await request.body())
        return JSONResponse({"jsonrpc": "2.0", "id": call["id"], "result": {"number": "0x1"}})

    url = serve_app(Starlette(routes=[Route("/", rpc, methods=["POST"])]))
    with pytest.raises(RpcError, match="block timestamp"):
        await authorization_verdict(url, BASE_USDC.address, "0x" + "ab" * 20, "0x" + "11" * 32, 1)


async def test_settled_and_lost_then_found_from_the_chain_without_sending_again(make_sim: Any) -> None:
    # The reply is lost after settlement and the job list fails: the server alone cannot say what happened.
    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "lost after settlement")
    sim.set_faults(
        [
            FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),
            FaultRule(route="jobs", kind="http_5xx", rate=1.0),
        ]
    )
    hooks = Recorder()
    async with client(sim, key, hooks) as c:
        with pytest.raises(PaymentUnrecovered, match="settled") as lost:
            await c.submit_edit(request)
    payment = lost.value.payment
    assert [p["nonce"] for p in edit_payments(sim, account.address)] == [payment.nonce.lower()]
    # Recorded as settled (money moved), with what the chain said: not "unknown".
    ((nonce, outcome),) = hooks.outcomes
    assert (nonce, outcome.status, outcome.chain_state) == (payment.nonce, "settled", "settled")

    # A rerun with the job list still failing: nothing is sent, nothing signed, still reported as paid.
    replays = sim.state()["counters"]["replays_refused"]
    rerun = Recorder()
    async with client(sim, key, rerun) as c:
        with pytest.raises(PaymentUnrecovered):
            await c.submit_edit(request, payment=payment)
        assert c.stats.payments_signed == 0
    assert sim.state()["counters"]["replays_refused"] == replays  # the used authorization was not re-sent

    # The list answers again: the job is found, the authorization still not re-sent, one payment in all.
    sim.set_faults([])
    found = Recorder()
    async with client(sim, key, found) as c:
        job = await c.submit_edit(request, payment=payment)
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        assert c.stats.payments_signed == 0
    assert job.resumed and result.image_url
    assert sim.state()["counters"]["replays_refused"] == replays
    assert len(edit_payments(sim, account.address)) == 1
    ((_, resumed),) = found.outcomes
    assert (resumed.status, resumed.chain_state) == ("settled", "settled")


async def test_without_an_rpc_the_same_loss_stays_unknown(make_sim: Any) -> None:
    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "no rpc")
    sim.set_faults(
        [
            FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),
            FaultRule(route="jobs", kind="http_5xx", rate=1.0),
        ]
    )
    hooks = Recorder()
    async with client(sim, key, hooks, rpc=False) as c:
        with pytest.raises(PaymentOutcomeUnknown) as lost:
            await c.submit_edit(request)
    assert not isinstance(lost.value, PaymentUnrecovered)
    assert [(o.status, o.chain_state) for _, o in hooks.outcomes] == [("unknown", None)]


async def test_lost_before_settlement_and_still_valid_is_re_sent_never_signed_anew(make_sim: Any) -> None:
    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "lost before settlement")
    # Every delivery of the signed request is cut before settlement: no money moved, the nonce is unused.
    sim.set_faults([FaultRule(route="flux-edit", kind="reset_before_settlement", rate=1.0, on="paid")])
    first = Recorder()
    async with client(sim, key, first) as c:
        with pytest.raises(PaymentOutcomeUnknown) as lost:
            await c.submit_edit(request)
    payment = lost.value.payment
    assert edit_payments(sim, account.address) == []
    assert [(o.status, o.chain_state) for _, o in first.outcomes] == [("unknown", "still_valid")]

    sim.set_faults([])
    rerun = Recorder()
    async with client(sim, key, rerun) as c:
        job = await c.submit_edit(request, payment=payment)
        assert c.stats.payments_signed == 0
    assert rerun.signed == [] and job.payment is not None and job.payment.nonce == payment.nonce
    assert [p["nonce"] for p in edit_payments(sim, account.address)] == [payment.nonce.lower()]
    assert [(o.status, o.chain_state) for _, o in rerun.outcomes] == [("settled", "still_valid")]


async def test_lost_before_settlement_then_expired_is_replaced_by_exactly_one_new_payment(
    make_sim: Any,
) -> None:
    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "lost, then expired")
    sim.set_faults([FaultRule(route="flux-edit", kind="reset_before_settlement", rate=1.0, on="paid")])
    async with client(sim, key) as c:
        with pytest.raises(PaymentOutcomeUnknown) as lost:
            await c.submit_edit(request)
    old = lost.value.payment
    assert edit_payments(sim, account.address) == []

    # The chain moves past the authorization's validBefore (the simulator's Base RPC stamps its blocks later:
    # the passing of 300 s, without waiting for it). A rerun finds it unused and void: one new payment.
    sim.set_faults([])
    sim.advance_chain_clock(old.valid_before - time.time() + 1)
    hooks = Recorder()
    async with client(sim, key, hooks) as c:
        job = await c.submit_edit(request, payment=old)
        assert c.stats.payments_signed == 1
    (new,) = hooks.signed
    assert job.payment == new and new.nonce != old.nonce
    assert [p["nonce"] for p in edit_payments(sim, account.address)] == [new.nonce.lower()]
    assert [(n, o.status, o.chain_state) for n, o in hooks.outcomes] == [
        (old.nonce, "rejected", "expired_unused"),
        (new.nonce, "settled", None),
    ]


async def expired_payment(sim: Any, key: str, request: EditRequest) -> Payment:
    """A real signature for the edit's real quote, whose validity ended an hour ago: a payment persisted and
    then never delivered (the process died before sending it) and found by a rerun long after. Producing it by
    waiting out a real validity window (at least 10 s under the policy, 300 s as quoted) would only be slower.
    """
    async with client(sim, key, rpc=False) as c:
        quote = await c.quote_edit(request)
    assert quote is not None
    return sign_payment(
        load_signer(key), quote, now=time.time() - 3600 - quote.requirement.max_timeout_seconds
    )


async def test_expired_and_unused_is_replaced_by_exactly_one_new_payment(make_sim: Any) -> None:
    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "expired")
    old = await expired_payment(sim, key, request)
    hooks = Recorder()
    async with client(sim, key, hooks) as c:
        job = await c.submit_edit(request, payment=old)
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        assert c.stats.payments_signed == 1
    assert result.image_url
    (new,) = hooks.signed
    assert new.nonce != old.nonce and job.payment == new
    assert [p["nonce"] for p in edit_payments(sim, account.address)] == [new.nonce.lower()]
    assert [(n, o.status, o.reason, o.chain_state) for n, o in hooks.outcomes] == [
        (old.nonce, "rejected", EXPIRED_UNUSED, "expired_unused"),
        (new.nonce, "settled", None, None),
    ]


async def test_without_an_rpc_an_expired_payment_is_stuck_but_never_replaced(make_sim: Any) -> None:
    # Today's behaviour, the reason to ask the chain: the server refuses the expired authorization and the
    # client cannot tell that no money moved, so it signs nothing and reports the outcome unknown.
    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "expired, no rpc")
    old = await expired_payment(sim, key, request)
    async with client(sim, key, rpc=False) as c:
        with pytest.raises(PaymentOutcomeUnknown):
            await c.submit_edit(request, payment=old)
        assert c.stats.payments_signed == 0
    assert edit_payments(sim, account.address) == []


async def test_an_rpc_that_does_not_answer_falls_back_to_the_server(
    make_sim: Any, serve_app: Callable[[Any], str]
) -> None:
    async def down(request: Request) -> Response:
        return JSONResponse({"error": "down"}, status_code=503)

    sim = make_sim()
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    request = await uploaded_request(sim, key, "rpc down")
    old = await expired_payment(sim, key, request)
    broken = serve_app(Starlette(routes=[Route("/", down, methods=["POST"])]))
    hooks = Recorder()
    async with StableStudioClient(
        key, base_url=sim.base_url, resend_backoff=0.01, hooks=hooks, base_rpc_url=broken
    ) as c:
        with pytest.raises(PaymentOutcomeUnknown):
            await c.submit_edit(request, payment=old)
        assert c.stats.payments_signed == 0  # an unreadable chain never allows a new signature
    assert [(o.status, o.chain_state) for _, o in hooks.outcomes] == [("unknown", "unknown")]
