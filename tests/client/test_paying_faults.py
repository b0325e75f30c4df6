"""Paying through faults, against a purpose-built server on 127.0.0.1 that records what it received.

The simulator covers the happy path and its own fault plan; these cases need a server that hangs after
settling, redirects, or quotes hostile terms on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_stablestudio.client import (
    BudgetExceeded,
    EditRequest,
    InvalidRequest,
    Payment,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyRefused,
    ProtocolError,
    Quote,
    WalletPolicy,
)
from tests.client.fake_studio import FakeStudio, hang, redirect_to
from tests.client.helpers import EDIT_REQUEST as REQUEST
from tests.client.helpers import Recorder, assert_payment_verifies, requirement
from tests.client.helpers import fake_studio_client as client


def settle_then_hang(fake: FakeStudio) -> Callable[[Request, int], Any]:
    """The first paid request settles, then its reply is lost (held past the client's timeout)."""

    async def behaviour(request: Request, n: int) -> Response | None:
        if n == 0:
            fake.settle(fake.seen[-1])
            await hang()
            return JSONResponse({"late": True})
        return None

    return behaviour


async def test_timeout_after_paid_send_resends_the_same_header_and_resumes(serve_app, key: str) -> None:
    fake = FakeStudio()
    fake.paid_behaviour = settle_then_hang(fake)
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks, timeout=0.3) as c:
        job = await c.submit_edit(REQUEST)
    # The server saw one nonce twice (the re-send), never a second signature.
    assert len(fake.signatures) == 2 and len(set(fake.signatures)) == 1
    assert len(hooks.signed) == 1 and hooks.signed[0].nonce == fake.signatures[0]
    assert job.resumed and job.job_id == "job1" and job.settlement is None
    assert [o.status for o in hooks.outcomes] == ["settled"]
    assert c.stats.payments_signed == 1


async def test_lost_reply_with_payment_identifier_gets_the_cached_reply(serve_app, key: str) -> None:
    fake = FakeStudio(extensions={"payment-identifier": {"info": {"required": False}, "schema": {}}})
    fake.paid_behaviour = settle_then_hang(fake)
    async with client(key, serve_app(fake.app()), timeout=0.3) as c:
        job = await c.submit_edit(REQUEST, idempotency_key="task-run-42")
    assert len(set(fake.signatures)) == 1
    sent_ids = {s.payment["extensions"]["payment-identifier"]["info"]["id"] for s in fake.seen if s.payment}
    assert sent_ids == {job.payment.payment_identifier} if job.payment else False
    assert not job.resumed and job.job_id == "job1" and job.settlement is not None
    # The lookup path was not needed.
    assert not [s for s in fake.seen if s.path == "/api/jobs"]


async def test_no_unique_job_after_a_lost_reply_raises_outcome_unknown_with_the_payment(
    serve_app, key: str
) -> None:
    fake = FakeStudio()
    fake.paid_behaviour = settle_then_hang(fake)
    async with client(key, serve_app(fake.app()), timeout=0.3) as c:
        fake.jobs.clear()  # nothing to find: the job list is empty
        original_settle = fake.settle

        def settle_without_job(seen: Any) -> Response:
            response = original_settle(seen)
            fake.jobs.clear()
            return response

        fake.settle = settle_without_job  # type: ignore[method-assign]
        with pytest.raises(PaymentOutcomeUnknown) as info:
            await c.submit_edit(REQUEST)
    assert info.value.payment.nonce == fake.signatures[0]
    assert len(set(fake.signatures)) == 1


async def test_5xx_then_success_reuses_the_header(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def fail_once(request: Request, n: int) -> Response | None:
        return JSONResponse({"error": "boom"}, status_code=503) if n == 0 else None

    fake.paid_behaviour = fail_once
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks) as c:
        job = await c.submit_edit(REQUEST)
    assert len(fake.signatures) == 2 and len(set(fake.signatures)) == 1
    assert job.settlement is not None and job.settlement.success
    assert [o.status for o in hooks.outcomes] == ["settled"]


async def test_endless_timeouts_end_in_outcome_unknown_after_bounded_resends(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def always_hang(request: Request, n: int) -> Response | None:
        await hang(1.0)
        return JSONResponse({})

    fake.paid_behaviour = always_hang
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks, timeout=0.3, resend_attempts=2) as c:
        with pytest.raises(PaymentOutcomeUnknown) as info:
            await c.submit_edit(REQUEST)
    assert len(fake.signatures) == 3 and set(fake.signatures) == {info.value.payment.nonce}
    assert [o.status for o in hooks.outcomes] == ["unknown"]


async def test_resuming_with_a_persisted_payment_signs_nothing_new(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def lose_first(request: Request, n: int) -> Response | None:
        return JSONResponse({"error": "boom"}, status_code=500) if n == 0 else None

    fake.paid_behaviour = lose_first
    base = serve_app(fake.app())
    async with client(key, base, resend_attempts=0) as c:
        with pytest.raises(PaymentOutcomeUnknown) as info:
            await c.submit_edit(REQUEST)
    persisted = Payment.model_validate_json(info.value.payment.model_dump_json())
    hooks = Recorder()
    async with client(key, base, hooks) as c:
        job = await c.submit_edit(REQUEST, payment=persisted)
        assert c.stats.payments_signed == 0 and hooks.quotes == [] and hooks.signed == []
        with pytest.raises(InvalidRequest, match="another request body"):
            await c.submit_edit(
                EditRequest(prompt="other", images=["https://b.example/x.png"]), payment=persisted
            )
    assert job.payment == persisted and set(fake.signatures) == {persisted.nonce}
    unpaid_quotes = [s for s in fake.seen if s.payment is None and s.path.startswith("/api/generate")]
    assert len(unpaid_quotes) == 1  # only the first client asked for a quote


async def test_rejection_on_first_send_is_payment_rejected(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def broke(request: Request, n: int) -> Response | None:
        return JSONResponse({"error": "insufficient_funds", "message": "no money"}, status_code=402)

    fake.paid_behaviour = broke
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks) as c:
        with pytest.raises(PaymentRejected) as info:
            await c.submit_edit(REQUEST)
    assert info.value.reason == "insufficient_funds" and info.value.payment is not None
    assert [(o.status, o.reason) for o in hooks.outcomes] == [("rejected", "insufficient_funds")]
    assert len(fake.signatures) == 1


@pytest.mark.parametrize(
    ("override", "policy", "reason"),
    [
        ({"amount": "2000000"}, WalletPolicy(), "amount_over_cap"),
        ({"asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e"}, WalletPolicy(), "asset_not_allowed"),
        ({"network": "eip155:1"}, WalletPolicy(), "network_not_allowed"),
        (
            {"payTo": "0x" + "2" * 40},
            WalletPolicy(allowed_pay_to=frozenset({"0x" + "1" * 40})),
            "pay_to_not_allowed",
        ),
        ({"scheme": "upto"}, WalletPolicy(), "scheme_not_allowed"),
        ({"payTo": "0x" + "0" * 40}, WalletPolicy(), "pay_to_invalid"),
        ({"maxTimeoutSeconds": 31_536_000}, WalletPolicy(), "timeout_out_of_bounds"),
    ],
)
async def test_hostile_quotes_sign_nothing(
    serve_app, key: str, override: dict[str, Any], policy: WalletPolicy, reason: str
) -> None:
    fake = FakeStudio(accepts=[requirement(**override)])
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks, policy=policy) as c:
        with pytest.raises(PolicyRefused) as info:
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 0
    assert info.value.reason == reason
    assert hooks.quotes == [] and hooks.signed == [] and hooks.outcomes == []
    assert fake.signatures == []


async def test_a_refusing_hook_signs_nothing(serve_app, key: str) -> None:
    class Budget(Recorder):
        async def before_signing(self, quote: Quote) -> None:
            await super().before_signing(quote)
            raise BudgetExceeded("cap reached", cap=100_000, asked=quote.amount, remaining=10_000)

    fake = FakeStudio()
    hooks = Budget()
    async with client(key, serve_app(fake.app()), hooks) as c:
        with pytest.raises(BudgetExceeded) as info:
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 0
    assert info.value.asked == 30_000
    assert len(hooks.quotes) == 1 and hooks.signed == [] and fake.signatures == []


async def test_redirect_on_the_quote_is_refused_before_signing(serve_app, key: str) -> None:
    elsewhere = FakeStudio()
    other = serve_app(elsewhere.app())
    fake = FakeStudio()
    app = fake.app()

    async def redirecting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/generate"):
            await redirect_to(other + scope["path"])(scope, receive, send)
            return
        await app(scope, receive, send)

    async with client(key, serve_app(redirecting)) as c:
        with pytest.raises(ProtocolError, match="redirect"):
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 0
    assert elsewhere.seen == []


async def test_payment_header_never_follows_a_redirect_to_another_origin(serve_app, key: str) -> None:
    elsewhere = FakeStudio()
    other = serve_app(elsewhere.app())
    fake = FakeStudio()

    async def redirect_paid(request: Request, n: int) -> Response | None:
        return redirect_to(other + request.url.path)

    fake.paid_behaviour = redirect_paid
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks) as c:
        with pytest.raises(PaymentOutcomeUnknown):
            await c.submit_edit(REQUEST)
    assert elsewhere.seen == []
    assert len(fake.signatures) == 1
    assert [o.status for o in hooks.outcomes] == ["unknown"]


async def test_validation_error_costs_nothing(serve_app, key: str) -> None:
    fake = FakeStudio()
    app = fake.app()

    async def validating(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/generate"):
            body = {
                "error": "validation_error",
                "message": "bad",
                "issues": [{"path": ["images", 0], "message": "x"}],
            }
            await JSONResponse(body, status_code=400)(scope, receive, send)
            return
        await app(scope, receive, send)

    async with client(key, serve_app(validating)) as c:
        with pytest.raises(InvalidRequest) as info:
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 0
    assert info.value.issues == [{"path": ["images", 0], "message": "x"}]


async def test_every_payment_sent_verifies_with_the_sdk(serve_app, key: str, fresh_account) -> None:
    fake = FakeStudio()
    async with client(key, serve_app(fake.app())) as c:
        await c.submit_edit(REQUEST)
        await c.submit_edit(REQUEST)
    sent = [s for s in fake.seen if s.payment]
    assert len(sent) == 2
    for s in sent:
        assert_payment_verifies(
            s.headers["payment-signature"], fresh_account.address, 30_000, requirement()["payTo"]
        )
    assert fake.seen[1].body == fake.seen[0].body  # the paid body is byte-identical to the quoted one
