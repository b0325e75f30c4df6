"""MPP (Tempo charge, signed by pympp) as the second payment method, end to end against the simulator.

The simulator verifies each credential itself (RLP-decodes the 0x76 transaction, recovers the sender, checks
currency, recipient, amount, chain and expiry) and answers pympp's RPC questions from a stand-in on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prefect_stablestudio.client import EditRequest, PaymentRejected, PolicyRefused, StableStudioClient
from prefect_stablestudio.client.mpp import choose_quote
from prefect_stablestudio.client.payment import NoHooks, Payment, PaymentOutcome
from prefect_stablestudio.client.policy import TEMPO_USDC_E, WalletPolicy
from prefect_stablestudio.client.x402 import Quote
from prefect_stablestudio.simulator.faults import FaultRule
from prefect_stablestudio.simulator.mpp import challenge_header, tempo_request
from tests.client.helpers import image_bytes, payment_required, requirement

TEMPO = "tempo:4217"
OTHER = "0x" + "7" * 40


class Recorder(NoHooks):
    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self.signed: list[Payment] = []
        self.outcomes: list[str] = []

    async def before_signing(self, quote: Quote) -> None:
        self.quotes.append(quote)

    async def after_signing(self, payment: Payment) -> None:
        self.signed.append(payment)

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        self.outcomes.append(outcome.status)


def mpp_client(
    sim: Any, key: str, hooks: Recorder | None = None, rpc: str | None = None, **policy: Any
) -> StableStudioClient:
    return StableStudioClient(
        key,
        base_url=sim.base_url,
        blob_api_url=sim.blob_api_url,
        policy=WalletPolicy(**{"payment_method": "mpp", **policy}),
        hooks=hooks,
        tempo_rpc_url=rpc or f"{sim.base_url}/_sim/tempo-rpc",
        resend_backoff=0.01,
    )


def payments_of(sim: Any, address: str) -> list[dict[str, Any]]:
    return [p for p in sim.state()["ledger"]["payments"] if p["payer"].lower() == address.lower()]


def rpc_calls(sim: Any) -> int:
    return sum(v for k, v in sim.state()["counters"]["events"].items() if k.startswith("tempo_rpc:"))


async def test_mpp_upload_edit_and_poll_settle_on_tempo(sim, key: str, fresh_account: LocalAccount) -> None:
    hooks = Recorder()
    async with mpp_client(sim, key, hooks) as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="tempo snow", images=[url]))
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)  # polling stays SIWX
    assert result.image_url
    paid = payments_of(sim, fresh_account.address)
    assert [(p["route"], p["amount"], p["network"]) for p in paid] == [
        ("upload", 10_000, TEMPO),
        ("flux-2-pro/edit", 45_000, TEMPO),
    ]
    assert job.payment is not None and job.payment.method == "mpp"
    assert job.payment.asset.lower() == TEMPO_USDC_E.lower() and job.payment.network == TEMPO
    assert job.payment.header.startswith("Payment ")
    # The receipt names the transaction the simulator settled, which is the hash of what pympp signed.
    assert job.settlement is not None and job.settlement.transaction == job.payment.nonce == paid[1]["nonce"]
    assert [q.mpp is not None for q in hooks.quotes] == [True, True]
    assert hooks.outcomes == ["settled", "settled"]
    state = sim.state()
    assert state["balances"][f"{TEMPO}:{fresh_account.address.lower()}"] == 100_000_000 - 55_000
    assert fresh_account.address.lower() not in state["balances"]  # Base USDC untouched
    assert state["counters"]["events"]["tempo_rpc:eth_chainId"] >= 1


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"max_amount_per_call": 9_999}, "amount_over_cap"),
        ({"mpp_currencies": frozenset({OTHER})}, "asset_not_allowed"),
        ({"mpp_recipients": frozenset({OTHER})}, "pay_to_not_allowed"),
        ({"mpp_chain_ids": frozenset({42431})}, "network_not_allowed"),
    ],
)
async def test_each_policy_refusal_signs_nothing(
    sim, key: str, fresh_account: LocalAccount, policy: dict[str, Any], reason: str
) -> None:
    hooks = Recorder()
    rpc_before = rpc_calls(sim)
    async with mpp_client(sim, key, hooks, **policy) as c:
        with pytest.raises(PolicyRefused) as refused:
            await c.upload(image_bytes())
        assert c.stats.payments_signed == 0
    assert refused.value.reason == reason
    assert hooks.quotes == [] and hooks.signed == []
    assert payments_of(sim, fresh_account.address) == []
    assert rpc_calls(sim) == rpc_before  # pympp never started building a transaction


def quote_response(url: str, x402_amount: int, mpp_amount: int, realm: str = "127.0.0.1:9") -> httpx.Response:
    pr = payment_required(url, [requirement(amount=str(x402_amount))])
    offer = tempo_request(mpp_amount, TEMPO_USDC_E, "0x" + "9" * 40, 4217)
    headers = [
        ("PAYMENT-REQUIRED", base64.b64encode(json.dumps(pr).encode()).decode()),
        ("WWW-Authenticate", challenge_header("s", realm, offer, time.time() + 300)),
    ]
    return httpx.Response(402, headers=headers, json={})


URL = "http://127.0.0.1:9/api/upload"


@pytest.mark.parametrize(
    ("x402_amount", "mpp_amount", "method", "chosen"),
    [
        (10_000, 10_000, "auto", "x402"),  # tie: x402 first
        (10_000, 9_000, "auto", "mpp"),
        (9_000, 10_000, "auto", "x402"),
        (10_000, 9_000, "x402", "x402"),  # a fixed method ignores the cheaper other one
        (9_000, 10_000, "mpp", "mpp"),
    ],
)
def test_payment_method_choice(x402_amount: int, mpp_amount: int, method: Any, chosen: str) -> None:
    response = quote_response(URL, x402_amount, mpp_amount)
    quote = choose_quote(response, WalletPolicy(payment_method=method), URL, "")
    assert ("mpp" if quote.mpp is not None else "x402") == chosen
    assert quote.amount == (mpp_amount if chosen == "mpp" else x402_amount)


def test_auto_falls_back_to_the_method_the_policy_allows() -> None:
    response = quote_response(URL, 5_000, 10_000)
    cheap_x402_refused = WalletPolicy(payment_method="auto", allowed_pay_to=frozenset({OTHER}))
    assert choose_quote(response, cheap_x402_refused, URL, "").mpp is not None
    both_refused = cheap_x402_refused.model_copy(update={"mpp_recipients": frozenset({OTHER})})
    with pytest.raises(PolicyRefused):
        choose_quote(response, both_refused, URL, "")


def test_realm_other_than_the_host_is_refused() -> None:
    response = quote_response(URL, 10_000, 10_000, realm="evil.example")
    with pytest.raises(PolicyRefused) as refused:
        choose_quote(response, WalletPolicy(payment_method="mpp"), URL, "")
    assert refused.value.reason == "realm_mismatch"


def test_expired_challenge_is_refused() -> None:
    pr = payment_required(URL, [requirement()])
    offer = tempo_request(10_000, TEMPO_USDC_E, "0x" + "9" * 40, 4217)
    response = httpx.Response(
        402,
        headers=[
            ("PAYMENT-REQUIRED", base64.b64encode(json.dumps(pr).encode()).decode()),
            ("WWW-Authenticate", challenge_header("s", "127.0.0.1:9", offer, time.time() - 5)),
        ],
    )
    with pytest.raises(PolicyRefused) as refused:
        choose_quote(response, WalletPolicy(payment_method="mpp"), URL, "")
    assert refused.value.reason == "timeout_out_of_bounds"


async def test_lost_reply_resends_the_same_credential_and_pays_once(
    make_sim, key: str, fresh_account: LocalAccount
) -> None:
    flaky = make_sim(faults=(FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),))
    hooks = Recorder()
    async with mpp_client(flaky, key, hooks) as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="lost tempo reply", images=[url]))
    paid = payments_of(flaky, fresh_account.address)
    assert [(p["route"], p["network"]) for p in paid] == [("upload", TEMPO), ("flux-2-pro/edit", TEMPO)]
    assert len(hooks.signed) == 2  # one signature per call: the edit's credential was re-sent, not re-signed
    assert job.resumed and job.payment == hooks.signed[1]
    assert flaky.state()["counters"]["payment_refusals"]["tempo_transaction_nonce_used"] == 1


async def test_resuming_with_a_persisted_mpp_payment_signs_nothing_new(
    sim, key: str, fresh_account: LocalAccount
) -> None:
    hooks = Recorder()
    async with mpp_client(sim, key, hooks) as c:
        url = await c.upload(image_bytes())
        first = await c.submit_edit(EditRequest(prompt="once", images=[url]))
        assert first.payment is not None
        # A worker that died after sending: it re-sends the persisted credential; nothing is signed anew.
        again = await c.submit_edit(EditRequest(prompt="once", images=[url]), payment=first.payment)
    assert again.job_id == first.job_id and len(hooks.signed) == 2
    assert len(payments_of(sim, fresh_account.address)) == 2


async def test_a_short_tempo_balance_is_refused_and_nothing_moves(make_sim, key: str, fresh_account) -> None:
    poor = make_sim(default_balance=5_000)
    hooks = Recorder()
    async with mpp_client(poor, key, hooks) as c:
        with pytest.raises(PaymentRejected) as rejected:
            await c.upload(image_bytes())
    assert rejected.value.reason == "insufficient_funds"
    assert hooks.outcomes == ["rejected"]
    assert payments_of(poor, fresh_account.address) == []


async def test_the_simulator_refuses_replays_and_credentials_for_another_price(sim, key: str) -> None:
    hooks = Recorder()
    async with mpp_client(sim, key, hooks) as c:
        await c.upload(image_bytes())
    credential = hooks.signed[0].request_headers
    before = len(sim.state()["ledger"]["payments"])
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        upload = {"filename": "again.png", "contentType": "image/png"}
        replay = await http.post("/api/upload", json=upload, headers=credential)
        generate = "/api/generate/flux-2-pro/generate"
        other_price = await http.post(generate, json={"prompt": "p"}, headers=credential)
    assert (replay.status_code, replay.json()["error"]) == (402, "tempo_transaction_nonce_used")
    assert (other_price.status_code, other_price.json()["error"]) == (402, "invalid_challenge")
    assert replay.headers["www-authenticate"].startswith("Payment ")
    assert len(sim.state()["ledger"]["payments"]) == before


async def test_mpp_off_means_x402_only_and_an_mpp_wallet_refuses(make_sim, key: str, fresh_account) -> None:
    from prefect_stablestudio.simulator.cli import build_parser, settings_from_args

    settings = settings_from_args(build_parser().parse_args(["--no-mpp", "--latency", "0.2"]))
    x402_only = make_sim(settings)
    async with mpp_client(x402_only, key) as c:
        with pytest.raises(PolicyRefused) as refused:
            await c.upload(image_bytes())
    assert refused.value.reason == "no_requirements"
    async with mpp_client(x402_only, key, payment_method="auto") as c:
        await c.upload(image_bytes())  # auto falls back to x402
    assert [p["network"] for p in payments_of(x402_only, fresh_account.address)] == ["eip155:8453"]


def rpc_app(chain_id: int, answers_gas: bool) -> Starlette:
    """A Tempo RPC that knows its chain id but (when told) fails every other call, as a broken node would."""

    async def rpc(request: Request) -> JSONResponse:
        call = await request.json()
        if call["method"] == "eth_chainId":
            return JSONResponse({"jsonrpc": "2.0", "id": call["id"], "result": hex(chain_id)})
        if answers_gas:
            return JSONResponse({"jsonrpc": "2.0", "id": call["id"], "result": hex(1)})
        error = {"code": -32000, "message": "down"}
        return JSONResponse({"jsonrpc": "2.0", "id": call["id"], "error": error})

    return Starlette(routes=[Route("/", rpc, methods=["POST"])])


@pytest.mark.parametrize(
    ("rpc", "reason"),
    [
        ("missing", "tempo_rpc_unavailable"),
        ("testnet", "tempo_rpc_chain_mismatch"),
    ],
)
async def test_a_bad_tempo_rpc_refuses_before_any_hook(
    sim, serve_app, key: str, fresh_account, rpc: str, reason: str
) -> None:
    url = f"{sim.base_url}/_sim/no-such-rpc" if rpc == "missing" else serve_app(rpc_app(42431, True))
    hooks = Recorder()
    async with mpp_client(sim, key, hooks, rpc=url) as c:
        with pytest.raises(PolicyRefused) as refused:
            await c.upload(image_bytes())
    assert refused.value.reason == reason
    assert hooks.quotes == [] and hooks.signed == [] and hooks.outcomes == []
    assert payments_of(sim, fresh_account.address) == []


async def test_signing_that_fails_midway_releases_the_reservation(
    sim, serve_app, key: str, fresh_account
) -> None:
    hooks = Recorder()
    broken = serve_app(rpc_app(4217, False))  # the chain id is right, the gas price fails
    async with mpp_client(sim, key, hooks, rpc=broken) as c:
        with pytest.raises(PolicyRefused) as refused:
            await c.upload(image_bytes())
    assert refused.value.reason == "signing_failed"
    assert len(hooks.quotes) == 1 and hooks.signed == []
    assert hooks.outcomes == ["rejected"]  # a budget hook refunds on this
    assert payments_of(sim, fresh_account.address) == []
