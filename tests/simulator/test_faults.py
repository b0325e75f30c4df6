"""Each fault kind does what it says, and a seed makes the faults reproducible."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from prefect_stablestudio.simulator import FaultRule, Simulator
from tests.simulator.helpers import (
    EDIT_PATH,
    decode_header,
    edit_body,
    encode_header,
    paid_post,
    put_blob,
    sdk_payment,
    siwx_request,
    upload_image,
)

UPLOAD_BODY = {"filename": "a.png", "contentType": "image/png"}


def payments_of(sim: Simulator, account: LocalAccount) -> list[dict[str, Any]]:
    return [p for p in sim.state()["ledger"]["payments"] if p["payer"] == account.address]


async def signed_upload(http: httpx.AsyncClient, account: LocalAccount) -> str:
    quote = await http.post("/api/upload", json=UPLOAD_BODY)
    return encode_header(await sdk_payment(account, quote.headers["payment-required"]))


async def test_rate_faults_repeat_under_the_same_seed(make_sim: Callable[..., Simulator]) -> None:
    async def pattern(seed: int) -> list[int]:
        server = make_sim(seed=seed, faults=(FaultRule(route="upload", kind="http_5xx", rate=0.5),))
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            return [(await http.post("/api/upload", json=UPLOAD_BODY)).status_code for _ in range(24)]

    first, again, other = await pattern(7), await pattern(7), await pattern(8)
    assert first == again
    assert first != other
    assert set(first) == {402, 503}


async def test_script_faults_hit_exactly_the_listed_requests(make_sim: Callable[..., Simulator]) -> None:
    server = make_sim(faults=(FaultRule(route="upload", kind="rate_limited_429", nth=(2, 4), retry_after=7),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        responses = [await http.post("/api/upload", json=UPLOAD_BODY) for _ in range(5)]
    assert [r.status_code for r in responses] == [402, 429, 402, 429, 402]
    assert responses[1].headers["retry-after"] == "7"
    assert server.state()["counters"]["faults_injected"] == {"upload:rate_limited_429": 2}


async def test_paid_only_http_5xx_moves_no_money(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(faults=(FaultRule(route="upload", kind="http_5xx", nth=(1,), on="paid", status=502),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        header = await signed_upload(http, fresh_account)
        failed = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
        assert failed.status_code == 502
        assert payments_of(server, fresh_account) == []
        retried = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
        assert retried.status_code == 200


async def test_reset_before_settlement_drops_the_connection_and_moves_no_money(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(faults=(FaultRule(route="upload", kind="reset_before_settlement", nth=(1,)),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        header = await signed_upload(http, fresh_account)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
        assert payments_of(server, fresh_account) == []
        assert server.state()["counters"]["uploads"] == 0
        again = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
        assert again.status_code == 200
        assert len(payments_of(server, fresh_account)) == 1


async def test_reset_after_settlement_keeps_the_money_and_a_resend_is_a_replay(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(faults=(FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        body = edit_body(await upload_image(http, fresh_account, server.blob_api_url))
        quote = await http.post(EDIT_PATH, json=body)
        header = encode_header(await sdk_payment(fresh_account, quote.headers["payment-required"]))
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(EDIT_PATH, json=body, headers={"PAYMENT-SIGNATURE": header})
        paid = payments_of(server, fresh_account)
        assert [p["route"] for p in paid] == ["upload", "flux-2-pro/edit"]
        resend = await http.post(EDIT_PATH, json=body, headers={"PAYMENT-SIGNATURE": header})
        assert resend.status_code == 402
        assert resend.json()["reason"] == "invalid_exact_evm_nonce_already_used"
        # The job it paid for exists and belongs to the payer: a client can find it in its job list.
        jobs = (await siwx_request(http, fresh_account, "GET", "/api/jobs")).json()["jobs"]
        assert [j["jobId"] for j in jobs] == [paid[1]["resource_id"]] and jobs[0]["input"] == body
        assert server.state()["counters"]["faults_injected"] == {"flux-2-pro/edit:reset_after_settlement": 1}


async def test_payment_identifier_answers_a_resend_from_the_cache(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(
        payment_identifier=True, faults=(FaultRule(route="upload", kind="reset_after_settlement", nth=(1,)),)
    )
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        quote = await http.post("/api/upload", json=UPLOAD_BODY)
        advertised = decode_header(quote.headers["payment-required"])["extensions"]["payment-identifier"]
        assert advertised["info"] == {"required": False}
        payload = await sdk_payment(fresh_account, quote.headers["payment-required"])
        payload["extensions"]["payment-identifier"]["info"]["id"] = "pay_0123456789abcdef"
        header = encode_header(payload)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
        cached = await http.post("/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": header})
        assert cached.status_code == 200
        assert (
            decode_header(cached.headers["payment-response"])["transaction"]
            == (payments_of(server, fresh_account)[0]["transaction"])
        )
        other = await sdk_payment(fresh_account, quote.headers["payment-required"])
        other["extensions"]["payment-identifier"]["info"]["id"] = "pay_0123456789abcdef"
        conflict = await http.post(
            "/api/upload", json=UPLOAD_BODY, headers={"PAYMENT-SIGNATURE": encode_header(other)}
        )
        assert conflict.status_code == 409
        assert len(payments_of(server, fresh_account)) == 1


async def test_settlement_failure_runs_the_handler_but_moves_no_money(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(faults=(FaultRule(route="flux-edit", kind="settlement_failure", nth=(1,)),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        body = edit_body(await upload_image(http, fresh_account, server.blob_api_url))
        response, _ = await paid_post(http, fresh_account, EDIT_PATH, body)
        assert response.status_code == 402
        settlement = decode_header(response.headers["payment-response"])
        assert settlement["success"] is False and settlement["transaction"] == ""
        assert [p["route"] for p in payments_of(server, fresh_account)] == ["upload"]
        jobs = (await siwx_request(http, fresh_account, "GET", "/api/jobs")).json()["jobs"]
        assert len(jobs) == 1 and jobs[0]["input"] == body


async def test_job_failure_fails_the_job(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(latency_seconds=0, faults=(FaultRule(route="flux-edit", kind="job_failure", nth=(1,)),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        body = edit_body(await upload_image(http, fresh_account, server.blob_api_url))
        failing, _ = await paid_post(http, fresh_account, EDIT_PATH, body)
        working, _ = await paid_post(http, fresh_account, EDIT_PATH, body)
        failed = (
            await siwx_request(http, fresh_account, "GET", f"/api/jobs/{failing.json()['jobId']}")
        ).json()
        assert failed["status"] == "failed" and failed["error"] and failed["result"] is None
        done = (await siwx_request(http, fresh_account, "GET", f"/api/jobs/{working.json()['jobId']}")).json()
        assert done["status"] == "complete"


async def test_malformed_json_keeps_the_status_and_breaks_the_body(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(faults=(FaultRule(route="job", kind="malformed_json", nth=(2,), on="paid"),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        body = edit_body(await upload_image(http, fresh_account, server.blob_api_url))
        job_id = (await paid_post(http, fresh_account, EDIT_PATH, body))[0].json()["jobId"]
        good = await siwx_request(http, fresh_account, "GET", f"/api/jobs/{job_id}")
        broken = await siwx_request(http, fresh_account, "GET", f"/api/jobs/{job_id}")
        assert good.json()["jobId"] == job_id
        assert broken.status_code == 200
        with pytest.raises(ValueError):
            broken.json()


async def test_expired_upload_token_is_refused_by_the_blob_api(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(faults=(FaultRule(route="upload", kind="expired_upload_token", nth=(1,)),))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        slot, _ = await paid_post(http, fresh_account, "/api/upload", UPLOAD_BODY)
        put = await put_blob(http, server.blob_api_url, slot.json(), b"\x89PNG")
        assert put.status_code == 403 and put.json()["error"]["code"] == "client_token_expired"


async def test_slow_fault_delays_the_answer(make_sim: Callable[..., Simulator]) -> None:
    server = make_sim(faults=(FaultRule(route="upload", kind="slow", nth=(1,), delay=0.8),))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/api/upload", json=UPLOAD_BODY)
        assert (await http.post("/api/upload", json=UPLOAD_BODY)).status_code == 402
    assert server.state()["counters"]["faults_injected"] == {"upload:slow": 1}


async def test_fault_plan_over_http_and_reset(make_sim: Callable[..., Simulator]) -> None:
    server = make_sim()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        rules = [{"route": "upload", "kind": "http_5xx", "nth": [1]}]
        assert (await http.post("/_sim/faults", json={"rules": rules, "seed": 3})).status_code == 200
        assert (await http.post("/api/upload", json=UPLOAD_BODY)).status_code == 503
        bad = await http.post("/_sim/faults", json=[{"route": "upload", "kind": "nope", "rate": 1}])
        assert bad.status_code == 400
        state = (await http.get("/_sim/state")).json()
        assert state["counters"]["faults_injected"] == {"upload:http_5xx": 1}
        assert state["counters"]["requests"] == {"POST /api/upload": 1}
        funded = await http.post("/_sim/fund", json={"address": "0x" + "a" * 40, "amount": "1.5"})
        assert funded.json()["balance"] == server.settings.default_balance + 1_500_000
        assert (await http.post("/_sim/reset")).status_code == 200
        after = (await http.get("/_sim/state")).json()
        assert after["counters"]["requests"] == {} and after["balances"] == {}
