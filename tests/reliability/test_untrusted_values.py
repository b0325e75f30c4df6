"""Hostile servers on 127.0.0.1, one per rule of `client/server_values.py` and of the plausible-price policy.

Each case asserts what the server received: no signature (PAYMENT-SIGNATURE) and no sign-in (SIGN-IN-WITH-X)
went out on the strength of a refused value.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prefect_stablestudio.client import (
    EditRequest,
    InvalidRequest,
    JobNotFound,
    PaymentRejected,
    PolicyRefused,
    ProtocolError,
    UntrustedChallenge,
    UntrustedServerValue,
    UpstreamError,
    WalletPolicy,
)
from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
from tests.client.fake_studio import FakeStudio
from tests.client.helpers import EDIT_REQUEST as REQUEST
from tests.client.helpers import Recorder, requirement, siwx_402
from tests.client.helpers import fake_studio_client as client

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64




def siwx_headers_seen(fake: FakeStudio) -> int:
    return sum(1 for s in fake.seen if "sign-in-with-x" in s.headers)


def paid_reply(fake: FakeStudio, reply: dict[str, Any]) -> Any:
    """Settle the payment (the money moves), then answer `reply` instead of the normal one."""

    async def behaviour(request: Request, n: int) -> Response:
        settled = fake.settle(fake.seen[-1])
        return JSONResponse(reply, headers={"PAYMENT-RESPONSE": settled.headers["payment-response"]})

    return behaviour


# -- job ids -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["../admin", "a/b", "x?limit=100", "x#frag", "x%2F..%2Fy", ".."])
async def test_a_job_id_with_path_characters_is_refused_before_any_poll(
    serve_app, key: str, job_id: str
) -> None:
    fake = FakeStudio()
    fake.paid_behaviour = paid_reply(fake, {"jobId": job_id, "status": "pending", "success": True})
    base = serve_app(fake.app())
    async with client(key, base) as c:
        with pytest.raises(UntrustedServerValue) as refused:
            await c.submit_edit(REQUEST)
        assert refused.value.field == "jobId"
        assert "settled and is recorded" in str(refused.value)
        with pytest.raises(UntrustedServerValue):
            await c.get_job(job_id)
    assert [s.path for s in fake.seen if s.path.startswith("/api/jobs")] == []
    assert siwx_headers_seen(fake) == 0


async def test_a_job_id_is_read_from_id_or_found_by_its_payment(serve_app, key: str) -> None:
    fake = FakeStudio()
    fake.paid_behaviour = paid_reply(fake, {"id": "job-from-id", "status": "pending"})
    base = serve_app(fake.app())
    async with client(key, base) as c:
        assert (await c.submit_edit(REQUEST)).job_id == "job-from-id"
        # Neither jobId nor id: the job the payment bought is looked up (same input, created after signing).
        fake.paid_behaviour = paid_reply(fake, {"status": "pending", "success": True})
        found = await c.submit_edit(EditRequest(prompt="other", images=["https://b.example/x.png"]))
    assert found.job_id == "job2" and found.payment is not None


async def test_a_reply_without_a_job_id_that_cannot_be_found_fails_clearly(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def settle_without_a_record(request: Request, n: int) -> Response:
        settled = fake.settle(fake.seen[-1])
        fake.jobs.clear()  # the list cannot find it either
        return JSONResponse(
            {"success": True}, headers={"PAYMENT-RESPONSE": settled.headers["payment-response"]}
        )

    fake.paid_behaviour = settle_without_a_record
    recorder = Recorder()
    async with client(key, serve_app(fake.app()), hooks=recorder) as c:
        with pytest.raises(ProtocolError, match=r"no jobId or id; the payment 0x[0-9a-f]+ settled"):
            await c.submit_edit(REQUEST)
    assert [o.status for o in recorder.outcomes] == ["settled"]


# -- result URLs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_url", ["http://evil.example/r.png", "file:///etc/passwd", "https://user:pw@cdn.example/r.png"]
)
async def test_a_result_url_that_is_not_safe_is_refused_before_use(
    serve_app, key: str, image_url: str
) -> None:
    fake = FakeStudio()
    base = serve_app(fake.app())
    async with client(key, base) as c:
        job = await c.submit_edit(REQUEST)
        fake.jobs[job.job_id]["result"] = {"imageUrl": image_url}
        with pytest.raises(UntrustedServerValue) as refused:
            await c.wait_for_job(job.job_id, expected_seconds=0.1, timeout=5)
        assert refused.value.field == "imageUrl"
        with pytest.raises(UntrustedServerValue):
            await c.download(image_url)


# -- SIWX challenges ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        {"statement": "Sign in\nURI: https://evil.example/"},
        {"nonce": "abc"},
        {"issuedAt": "not a time"},
        {"expirationTime": "tomorrow"},
        {"version": "2"},
        {"chainId": "eip155:1"},
        {"domain": "127.0.0.1:1\nx"},
        {"uri": "https://evil.example/api/jobs/job1"},
        {"requestId": "a b"},
    ],
)
async def test_a_malformed_siwx_challenge_is_never_signed(
    serve_app, key: str, override: dict[str, str]
) -> None:
    fake = FakeStudio()

    async def hostile(request: Request, n: int) -> Response:
        return siwx_402(request, **override)

    fake.jobs_behaviour = hostile
    async with client(key, serve_app(fake.app()), siwx_mode="challenge") as c:
        with pytest.raises(UntrustedChallenge) as refused:
            await c.get_job("job1")
        assert c.stats.siwx_proofs_signed == 0
    assert refused.value.field in {*override, "chainId"}
    assert siwx_headers_seen(fake) == 0


# -- upload tickets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticket", "field"),
    [
        ({"pathname": "../../etc/passwd"}, "pathname"),
        ({"pathname": "/uploads/abs.png"}, "pathname"),
        ({"clientToken": "not-a-vercel-token"}, "clientToken"),
        ({"uploadId": "a/b"}, "uploadId"),
    ],
)
async def test_a_bad_upload_ticket_is_refused_before_the_blob_put(
    serve_app, key: str, ticket: dict[str, str], field: str
) -> None:
    fake = FakeStudio(accepts=[requirement(amount="10000")])  # $0.01, the upload's published price
    token = "vercel_blob_client_store_" + base64.b64encode(b"sig.e30=").decode()
    good = {"uploadId": "u1", "clientToken": token, "pathname": "uploads/u1/a.png"}
    fake.paid_behaviour = paid_reply(fake, {**good, **ticket})
    base = serve_app(fake.app())
    async with client(key, base, blob_api_url=f"{base}/blob") as c:
        with pytest.raises(UntrustedServerValue) as refused:
            await c.upload(PNG, filename="a.png")
    assert refused.value.field == field
    assert [s.method for s in fake.seen] == ["POST", "POST"]  # the quote and the paid POST; no PUT


async def test_an_upload_filename_with_a_slash_is_refused_before_paying(serve_app, key: str) -> None:
    fake = FakeStudio()
    async with client(key, serve_app(fake.app())) as c:
        with pytest.raises(InvalidRequest) as refused:
            await c.upload(PNG, filename="a/b.png")
    assert refused.value.field == "filename"
    assert fake.seen == []


# -- prices and validation ---------------------------------------------------------------------------------


async def test_an_implausible_quote_is_refused_before_signing_whatever_the_cap(serve_app, key: str) -> None:
    # @agentcash/router quotes the route's maxPrice ($10) for a body its price function cannot parse.
    fake = FakeStudio(accepts=[requirement(amount="10000000")])
    base = serve_app(fake.app())
    recorder = Recorder()
    policy = WalletPolicy(max_amount_per_call=20_000_000)  # $20 per call
    async with client(key, base, policy=policy, hooks=recorder) as c:
        with pytest.raises(PolicyRefused) as refused:
            await c.submit_edit(REQUEST)
        assert c.stats.payments_signed == 0
    assert refused.value.reason == "implausible_price"
    assert fake.signatures == [] and recorder.signed == []
    # Allowed explicitly, the cap alone decides.
    allowing = WalletPolicy(max_amount_per_call=20_000_000, allow_implausible_prices=True)
    async with client(key, base, policy=allowing) as c:
        assert (await c.submit_edit(REQUEST)).payment.amount == 10_000_000  # type: ignore[union-attr]


ROUTER_400 = {
    "success": False,
    "error": "Validation failed",
    "issues": [
        {
            "code": "invalid_value",
            "values": ["0.5 MP", "1 MP", "2 MP"],
            "path": ["resolution"],
            "message": 'Invalid option: expected one of "0.5 MP"|"1 MP"|"2 MP"',
        }
    ],
}


async def test_a_signed_request_answered_400_is_an_invalid_request_with_the_issues(
    serve_app, key: str
) -> None:
    fake = FakeStudio()

    async def validate_after_signing(request: Request, n: int) -> Response:
        return JSONResponse(ROUTER_400, status_code=400)

    fake.paid_behaviour = validate_after_signing
    recorder = Recorder()
    async with client(key, serve_app(fake.app()), hooks=recorder) as c:
        with pytest.raises(InvalidRequest) as refused:
            await c.submit_edit(REQUEST)
    assert refused.value.issues == ROUTER_400["issues"]
    assert refused.value.field == "resolution"
    assert "no money moved" in str(refused.value) and "resolution: Invalid option" in str(refused.value)
    assert [(o.status, o.reason) for o in recorder.outcomes] == [("rejected", "invalid_request")]
    assert len(fake.signatures) == 1  # sent once, never re-sent


# -- refusals in the official dialect ----------------------------------------------------------------------


async def test_the_refusal_code_is_read_from_reason(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def mismatch(request: Request, n: int) -> Response:
        pr = {"x402Version": 2, "resource": {"url": str(request.url)}, "accepts": [requirement()]}
        return JSONResponse(
            {
                "error": "Payment rejected (requirements_mismatch): Signed payment requirements did not "
                "match any server-built requirement",
                "reason": "requirements_mismatch",
            },
            status_code=402,
            headers={"PAYMENT-REQUIRED": encode_b64_json(pr)},
        )

    fake.paid_behaviour = mismatch
    async with client(key, serve_app(fake.app())) as c:
        with pytest.raises(PaymentRejected) as refused:
            await c.submit_edit(REQUEST)
    assert refused.value.reason == "requirements_mismatch"


async def test_the_official_replay_code_finds_what_the_payment_bought(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def replayed(request: Request, n: int) -> Response:
        fake.settle(fake.seen[-1])  # an earlier delivery of this authorization settled
        return JSONResponse(
            {
                "error": "Payment rejected (invalid_exact_evm_nonce_already_used): The contract function "
                '"transferWithAuthorization" reverted with the following reason:\nFiatTokenV2: authorization '
                "is used or canceled",
                "reason": "invalid_exact_evm_nonce_already_used",
            },
            status_code=402,
        )

    fake.paid_behaviour = replayed
    async with client(key, serve_app(fake.app())) as c:
        job = await c.submit_edit(REQUEST)
    assert job.resumed and job.job_id == "job1"
    assert len(set(fake.signatures)) == 1


async def test_a_route_not_found_envelope_keeps_its_code(serve_app, key: str) -> None:
    async def not_found(request: Request) -> Response:
        return JSONResponse(
            {
                "success": False,
                "code": "route_not_found",
                "error": "Route not found. Rediscover this origin and retry with the current discovery "
                "document.",
                "discovery": {"openapi": "/openapi.json", "llmsTxt": "/llms.txt"},
            },
            status_code=404,
        )

    app = Starlette(routes=[Route("/api/jobs", not_found)])
    async with client(key, serve_app(app)) as c:
        with pytest.raises(UpstreamError) as refused:
            await c.list_jobs()
    assert (refused.value.status, refused.value.code) == (404, "route_not_found")


# -- polling what no public source settles -----------------------------------------------------------------


async def test_an_unknown_status_is_still_running_and_logged_once(
    serve_app, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeStudio()

    async def queued_twice(request: Request, n: int) -> Response | None:
        if n < 3:
            return JSONResponse({"id": request.path_params["job_id"], "status": "queued", "error": {"x": 1}})
        return None

    fake.jobs_behaviour = queued_twice
    async with client(key, serve_app(fake.app())) as c:
        job = await c.submit_edit(REQUEST)
        with caplog.at_level(logging.WARNING, logger="prefect_stablestudio.client.studio"):
            result = await c.wait_for_job(job.job_id, expected_seconds=0.1, timeout=10)
    assert result.image_url == "http://127.0.0.1/x.webp"
    assert fake.jobs_count == 4
    assert [r.getMessage() for r in caplog.records].count(
        f"job {job.job_id} has unknown status 'queued': read as still running"
    ) == 1


async def test_a_failed_job_reports_an_error_of_any_shape(serve_app, key: str) -> None:
    from prefect_stablestudio.client import JobFailed

    fake = FakeStudio()
    async with client(key, serve_app(fake.app())) as c:
        job = await c.submit_edit(REQUEST)
        fake.jobs[job.job_id].update(status="failed", error={"message": "NSFW content detected", "code": 42})
        with pytest.raises(JobFailed, match="NSFW content detected"):
            await c.wait_for_job(job.job_id, expected_seconds=0.1, timeout=5)


async def test_a_404_right_after_the_submit_is_retried_for_a_grace_period(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def not_yet(request: Request, n: int) -> Response | None:
        return JSONResponse({"error": "job not found"}, status_code=404) if n < 2 else None

    fake.jobs_behaviour = not_yet
    async with client(key, serve_app(fake.app())) as c:
        job = await c.submit_edit(REQUEST)
        result = await c.wait_for_job(job.job_id, expected_seconds=0.1, timeout=10)
        assert result.job_id == job.job_id and fake.jobs_count == 3
        # Past the grace period a 404 means "not found or not yours".
        with pytest.raises(JobNotFound):
            await c.wait_for_job("nosuchjob", expected_seconds=0.1, timeout=10, not_found_grace=0.5)


# -- the server's clock ------------------------------------------------------------------------------------


async def test_a_client_chosen_nonce_is_stamped_with_the_servers_clock(serve_app, key: str) -> None:
    fake = FakeStudio()
    skew = timedelta(hours=2)
    issued: list[datetime] = []

    async def two_hours_ahead(request: Request, n: int) -> Response | None:
        header = request.headers.get("sign-in-with-x")
        if header:
            issued.append(datetime.fromisoformat(decode_b64_json(header)["issuedAt"].replace("Z", "+00:00")))
        return JSONResponse(
            {"error": "job not found"},
            status_code=404,
            headers={"Date": format_datetime(datetime.now(UTC) + skew, usegmt=True)},
        )

    fake.jobs_behaviour = two_hours_ahead
    async with client(key, serve_app(fake.app(), date_header=False), siwx_mode="client_nonce") as c:
        for _ in range(2):
            with pytest.raises(JobNotFound):
                await c.get_job("job1")
    # The first proof went out before any Date was seen; the second carries the server's time.
    assert abs(issued[0] - datetime.now(UTC)) < timedelta(minutes=1)
    assert abs(issued[1] - (datetime.now(UTC) + skew)) < timedelta(minutes=1)


# -- the router's SIWX dialect -----------------------------------------------------------------------------


async def test_a_router_style_sign_in_needs_one_more_request_and_no_port(serve_app, key: str) -> None:
    """@agentcash/router refuses a client-chosen proof whose domain has the port without a new challenge,
    and names the host without its port in the challenge it gives to a plain request."""
    fake = FakeStudio()

    async def router(request: Request, n: int) -> Response | None:
        header = request.headers.get("sign-in-with-x")
        if header is None:
            response = siwx_402(request, domain=request.url.hostname)
            response.headers["WWW-Authenticate"] = 'Payment id="z", realm="127.0.0.1", method="tempo"'
            response.headers["X-Agent-Identity"] = base64.urlsafe_b64encode(
                json.dumps({"v": 1}).encode()
            ).decode()
            return response
        if decode_b64_json(header)["domain"] != request.url.hostname:
            return JSONResponse({"error": "siwx_malformed", "message": "bad domain"}, status_code=402)
        return None

    fake.jobs_behaviour = router
    async with client(key, serve_app(fake.app())) as c:
        job = await c.submit_edit(REQUEST)
        assert (await c.get_job(job.job_id)).status == "complete"
        assert c.siwx_mode_in_use == "challenge"
        assert fake.jobs_count == 3  # refused proof, plain request for a challenge, signed proof
        assert (await c.get_job(job.job_id)).status == "complete"
        assert fake.jobs_count == 5
