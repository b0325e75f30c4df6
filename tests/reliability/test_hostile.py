"""A hostile or misconfigured server: each case refused before anything is signed, with an error naming it.

Cases already covered in tests/client (not repeated here): amount over the cap, another asset, another
network, a payTo outside the allow-list, another scheme, a zero payTo, an absurd validity window
(`test_paying_faults.py::test_hostile_quotes_sign_nothing`); a SIWX challenge for another domain or uri
(`test_client_edges.py::test_challenge_for_another_origin_is_never_signed`); redirects to another host on the
quote, the paid POST and a SIWX GET, where the other host records that it received nothing
(`test_paying_faults.py::test_redirect_on_the_quote_is_refused_before_signing`,
`::test_payment_header_never_follows_a_redirect_to_another_origin`,
`test_client_edges.py::test_siwx_header_never_follows_a_redirect`); a jobs GET that asks for a payment
(`test_client_edges.py::test_a_jobs_get_that_asks_for_money_is_never_paid`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_stablestudio.client import (
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyRefused,
    ProtocolError,
    WalletPolicy,
)
from prefect_stablestudio.client.encoding import MAX_HEADER_CHARS, encode_b64_json
from tests.client.fake_studio import FakeStudio
from tests.client.helpers import EDIT_REQUEST as REQUEST
from tests.client.helpers import PAY_TO, Recorder, payment_required, requirement, siwx_402
from tests.client.helpers import fake_studio_client as client
from tests.reliability.helpers import OTHER_PAY_TO, requote_with


async def test_a_payto_that_changes_after_a_persisted_payment_gets_no_new_signature(
    serve_app, key: str
) -> None:
    fake = FakeStudio()

    async def lose_reply(request: Request, n: int) -> Response | None:
        return JSONResponse({"error": "boom"}, status_code=500)

    fake.paid_behaviour = lose_reply
    base = serve_app(fake.app())
    async with client(key, base, resend_attempts=0) as c:
        with pytest.raises(PaymentOutcomeUnknown) as first:
            await c.submit_edit(REQUEST)
    persisted = first.value.payment
    assert persisted.pay_to == PAY_TO

    # The rerun re-sends the persisted payment; the server now wants the money somewhere else.
    fake.paid_behaviour = requote_with(OTHER_PAY_TO, "invalid_exact_evm_payload_recipient_mismatch")
    fake.accepts = [requirement(payTo=OTHER_PAY_TO)]
    hooks = Recorder()
    async with client(key, base, hooks) as c:
        with pytest.raises(PaymentOutcomeUnknown) as again:
            await c.submit_edit(REQUEST, payment=persisted)
        assert c.stats.payments_signed == 0
    assert again.value.payment == persisted
    assert "recipient_mismatch" in str(again.value)
    assert hooks.quotes == [] and hooks.signed == []
    assert set(fake.signatures) == {persisted.nonce}
    sent_to = {s.payment["payload"]["authorization"]["to"] for s in fake.seen if s.payment}
    assert sent_to == {PAY_TO}


async def test_a_payto_that_changes_between_quote_and_paid_send_is_not_signed_again(
    serve_app, key: str
) -> None:
    fake = FakeStudio()
    fake.paid_behaviour = requote_with(OTHER_PAY_TO, "invalid_exact_evm_payload_recipient_mismatch")
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks) as c:
        with pytest.raises(PaymentRejected) as info:
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 1
    assert info.value.reason == "invalid_exact_evm_payload_recipient_mismatch"
    assert len(hooks.signed) == 1 and hooks.signed[0].pay_to == PAY_TO
    assert len(fake.signatures) == 1


async def test_a_payto_allow_list_refuses_the_changed_recipient_on_the_next_call(serve_app, key: str) -> None:
    fake = FakeStudio()
    policy = WalletPolicy(allowed_pay_to=frozenset({PAY_TO}))
    async with client(key, serve_app(fake.app()), policy=policy) as c:
        await c.submit_edit(REQUEST)
        fake.accepts = [requirement(payTo=OTHER_PAY_TO)]
        with pytest.raises(PolicyRefused, match="allow-list") as info:
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 1
    assert info.value.reason == "pay_to_not_allowed"
    assert len(fake.signatures) == 1


def _quote_app(fake: FakeStudio, answer: Any) -> Any:
    """Wrap `fake`: every POST to a generate route gets `answer(request_url)` instead of a quote."""
    app = fake.app()

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/generate"):
            fake.seen.append(_seen(scope))
            await answer(f"http://{scope['server'][0]}:{scope['server'][1]}{scope['path']}")(
                scope, receive, send
            )
            return
        await app(scope, receive, send)

    return wrapped


def _seen(scope: Any) -> Any:
    from tests.client.fake_studio import Seen

    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    return Seen(scope["method"], scope["path"], headers, b"")


def _oversized(url: str) -> Response:
    pr = payment_required(url, [requirement()])
    pr["resource"]["description"] = "x" * (MAX_HEADER_CHARS + 1024)
    return Response("{}", status_code=402, headers={"PAYMENT-REQUIRED": encode_b64_json(pr)})


def _undecodable(url: str) -> Response:
    return Response("{}", status_code=402, headers={"PAYMENT-REQUIRED": "%%% not base64 %%%"})


def _base64_of_garbage(url: str) -> Response:
    junk = base64.b64encode(b"\xff\xfe not json").decode()
    return Response("{}", status_code=402, headers={"PAYMENT-REQUIRED": junk})


def _not_json(url: str) -> Response:
    return Response("<html>402 Payment Required</html>", status_code=402, media_type="text/html")


def _json_not_x402(url: str) -> Response:
    body = json.dumps({"x402Version": 1, "accepts": [requirement()]})
    return Response(
        "{}", status_code=402, headers={"PAYMENT-REQUIRED": base64.b64encode(body.encode()).decode()}
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_oversized, "too large"),
        (_undecodable, "not base64 JSON"),
        (_base64_of_garbage, "not base64 JSON"),
        (_not_json, "not an x402 version 2"),
        (_json_not_x402, "not an x402 version 2"),
    ],
    ids=["oversized-header", "undecodable-header", "base64-of-garbage", "non-json-body", "x402-v1"],
)
async def test_a_broken_quote_is_refused_before_signing(
    serve_app, key: str, answer: Any, message: str
) -> None:
    fake = FakeStudio()
    hooks = Recorder()
    async with client(key, serve_app(_quote_app(fake, answer)), hooks) as c:
        with pytest.raises(ProtocolError, match=message):
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 0
    assert hooks.quotes == [] and hooks.signed == []
    assert fake.signatures == [] and len(fake.seen) == 1


async def test_an_oversized_siwx_challenge_is_refused_before_signing(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def huge(request: Request, n: int) -> Response:
        response = siwx_402(request)
        header = response.headers["payment-required"]
        pr = json.loads(base64.b64decode(header))
        pr["extensions"]["sign-in-with-x"]["info"]["statement"] = "y" * (MAX_HEADER_CHARS + 10)
        return Response("{}", status_code=402, headers={"PAYMENT-REQUIRED": encode_b64_json(pr)})

    fake.jobs_behaviour = huge
    async with client(key, serve_app(fake.app()), siwx_mode="challenge") as c:
        with pytest.raises(ProtocolError, match="too large"):
            await c.get_job("x")
        assert c.stats.siwx_proofs_signed == 0
    assert all("sign-in-with-x" not in s.headers for s in fake.seen)


async def test_a_paid_reply_that_is_not_json_is_resumed_without_paying_again(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def html_after_settling(request: Request, n: int) -> Response | None:
        fake.settle(fake.seen[-1])
        return Response("<html>ok</html>", media_type="text/html")

    fake.paid_behaviour = html_after_settling
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks) as c:
        job = await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 1
    # The money moved (200 + settled): the job it bought is found instead of leaving the outcome unknown.
    assert job.job_id == "job1" and job.resumed and job.payment == hooks.signed[0]
    assert fake.signatures == [hooks.signed[0].nonce] and len(fake.settled_nonces) == 1
    assert [o.status for o in hooks.outcomes] == ["settled"]


async def test_a_paid_reply_that_is_not_json_and_finds_nothing_is_unknown_with_the_payment(
    serve_app, key: str
) -> None:
    fake = FakeStudio()

    async def html_after_settling(request: Request, n: int) -> Response | None:
        fake.settle(fake.seen[-1])
        fake.jobs.clear()
        return Response("<html>ok</html>", media_type="text/html")

    fake.paid_behaviour = html_after_settling
    hooks = Recorder()
    async with client(key, serve_app(fake.app()), hooks) as c:
        with pytest.raises(PaymentOutcomeUnknown, match="not JSON") as info:
            await c.submit_edit(REQUEST)
    assert info.value.payment == hooks.signed[0] and len(fake.signatures) == 1
    assert [o.status for o in hooks.outcomes] == ["unknown"]


@pytest.mark.parametrize("body", [b"<html>nope</html>", b'{"jobId": 3', b"[1, 2]"])
async def test_a_jobs_reply_that_is_not_a_job_is_a_protocol_error(serve_app, key: str, body: bytes) -> None:
    fake = FakeStudio()

    async def garbage(request: Request, n: int) -> Response:
        return Response(body, media_type="application/json")

    fake.jobs_behaviour = garbage
    async with client(key, serve_app(fake.app())) as c:
        with pytest.raises(ProtocolError, match="malformed"):
            await c.get_job("x")
        assert c.stats.payments_signed == 0


@pytest.mark.parametrize("status", [503, 429])
async def test_a_lost_reply_is_resumed_even_if_the_job_lookup_fails_once(
    serve_app, key: str, status: int
) -> None:
    fake = FakeStudio()

    async def settle_then_drop(request: Request, n: int) -> Response | None:
        if n == 0:
            fake.settle(fake.seen[-1])
            return JSONResponse({"error": "boom"}, status_code=502)  # the reply is lost to a proxy error
        return None

    fake.paid_behaviour = settle_then_drop
    app = fake.app()
    failed_lookups: list[int] = []

    async def flaky_list(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/jobs" and not failed_lookups:
            failed_lookups.append(status)
            headers = {"Retry-After": "0"} if status == 429 else {}
            await JSONResponse({"error": "busy"}, status_code=status, headers=headers)(scope, receive, send)
            return
        await app(scope, receive, send)

    hooks = Recorder()
    async with client(key, serve_app(flaky_list), hooks) as c:
        job = await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 1
    assert failed_lookups == [status]
    assert job.resumed and job.job_id == "job1"
    assert len(set(fake.signatures)) == 1 and [o.status for o in hooks.outcomes] == ["settled"]
