"""Client edges: SIWX hostility, URL rules, env fallbacks, the key never leaking, the blocking facade."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_stablestudio.client import (
    EditRequest,
    InvalidRequest,
    PaymentOutcomeUnknown,
    PolicyRefused,
    ProtocolError,
    StableStudioClient,
    StableStudioError,
    UntrustedChallenge,
    WalletPolicy,
)
from prefect_stablestudio.client.encoding import encode_b64_json
from prefect_stablestudio.client.sync import StableStudio
from tests.client.fake_studio import FakeStudio, redirect_to
from tests.client.helpers import payment_required, requirement, siwx_402


@pytest.mark.parametrize("override", [{"domain": "evil.example"}, {"uri": "https://evil.example/api/jobs/x"}])
async def test_challenge_for_another_origin_is_never_signed(
    serve_app, key: str, override: dict[str, str]
) -> None:
    fake = FakeStudio()

    async def hostile(request: Request, n: int) -> Response:
        return siwx_402(request, **override)

    fake.jobs_behaviour = hostile
    async with StableStudioClient(key, base_url=serve_app(fake.app()), siwx_mode="challenge") as c:
        with pytest.raises(UntrustedChallenge):
            await c.get_job("x")
        assert c.stats.siwx_proofs_signed == 0
    assert [s.headers.get("sign-in-with-x") for s in fake.seen] == [None]


async def test_a_jobs_get_that_asks_for_money_is_never_paid(serve_app, key: str) -> None:
    fake = FakeStudio()

    async def greedy(request: Request, n: int) -> Response:
        pr = payment_required(str(request.url), [requirement()])
        return Response("{}", status_code=402, headers={"PAYMENT-REQUIRED": encode_b64_json(pr)})

    fake.jobs_behaviour = greedy
    async with StableStudioClient(key, base_url=serve_app(fake.app())) as c:
        with pytest.raises(PolicyRefused) as info:
            await c.get_job("x")
        assert c.stats.payments_signed == 0
    assert info.value.reason == "payment_on_siwx_route"
    assert not [s for s in fake.seen if "payment-signature" in s.headers]


async def test_siwx_header_never_follows_a_redirect(serve_app, key: str) -> None:
    elsewhere = FakeStudio()
    other = serve_app(elsewhere.app())
    fake = FakeStudio()

    async def moved(request: Request, n: int) -> Response:
        return redirect_to(other + request.url.path)

    fake.jobs_behaviour = moved
    async with StableStudioClient(key, base_url=serve_app(fake.app())) as c:
        with pytest.raises(ProtocolError, match="redirect"):
            await c.get_job("x")
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    "url", ["http://stablestudio.dev", "ftp://127.0.0.1", "http://10.0.0.1:8000", "nohost"]
)
def test_plain_http_is_refused_except_on_loopback(key: str, url: str) -> None:
    with pytest.raises(InvalidRequest):
        StableStudioClient(key, base_url=url)
    StableStudioClient(key, base_url="http://127.0.0.1:9")
    StableStudioClient(key, base_url="http://localhost:9", blob_api_url="http://[::1]:9/api/blob")


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch, key: str, fresh_account) -> None:
    monkeypatch.setenv("STABLESTUDIO_PRIVATE_KEY", key)
    monkeypatch.setenv("STABLESTUDIO_BASE_URL", "http://127.0.0.1:1234/")
    monkeypatch.setenv("STABLESTUDIO_BLOB_API_URL", "http://127.0.0.1:1234/api/blob")
    c = StableStudioClient()
    assert (c.address, c.base_url, c.blob_api_url) == (
        fresh_account.address,
        "http://127.0.0.1:1234",
        "http://127.0.0.1:1234/api/blob",
    )
    monkeypatch.delenv("STABLESTUDIO_PRIVATE_KEY")
    monkeypatch.delenv("STABLESTUDIO_BASE_URL")
    with pytest.raises(InvalidRequest, match="STABLESTUDIO_PRIVATE_KEY"):
        StableStudioClient()
    assert StableStudioClient(SecretStr(key)).base_url == "https://stablestudio.dev"


def _texts(obj: object) -> list[str]:
    return [repr(obj), str(obj)] + ([obj.model_dump_json()] if hasattr(obj, "model_dump_json") else [])


async def test_the_key_never_appears_in_reprs_or_errors(serve_app, key: str) -> None:
    hex_key = key.removeprefix("0x").lower()
    texts: list[str] = []
    bad_keys = [key[:-2] + "zz", key + "00", "0x" + "f" * 64, key[2:] + " trailing"]
    for bad in bad_keys:
        with pytest.raises(InvalidRequest) as info:
            StableStudioClient(bad)
        texts += [str(info.value), repr(info.value), repr(info.value.__context__), repr(info.value.__cause__)]
        hex_bad = bad.removeprefix("0x").strip().lower()
        assert hex_bad[:40] not in " ".join(texts).lower()

    fake = FakeStudio()

    async def lost(request: Request, n: int) -> Response:
        return JSONResponse({"error": "boom"}, status_code=500)

    fake.paid_behaviour = lost
    c = StableStudioClient(
        SecretStr(key),
        base_url=serve_app(fake.app()),
        resend_attempts=0,
        policy=WalletPolicy(max_amount_per_call=50_000),
    )
    texts += _texts(c) + _texts(c.policy) + _texts(c.stats)
    async with c:
        with pytest.raises(PaymentOutcomeUnknown) as info:
            await c.submit_edit(EditRequest(prompt="p", images=["https://b/x.png"]))
        errors: list[StableStudioError] = [info.value]
        fake.accepts = [requirement(amount="60000")]
        with pytest.raises(PolicyRefused) as refused:
            await c.submit_edit(EditRequest(prompt="p", images=["https://b/x.png"]))
        errors.append(refused.value)
    texts += _texts(info.value.payment) + [t for e in errors for t in (str(e), repr(e))]
    with StableStudio(key, base_url="http://127.0.0.1:9") as studio:
        texts += _texts(studio)
    joined = "\n".join(texts).lower()
    assert hex_key not in joined
    assert c.address in "\n".join(texts)  # the address is what identifies the wallet


def test_blocking_facade_runs_the_whole_flow(sim, key: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "orange").save(buf, "PNG")
    with StableStudio(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url) as studio:
        url = studio.upload(buf.getvalue())
        job = studio.submit_edit(EditRequest(prompt="p", images=[url]))
        result = studio.wait_for_job(job.job_id, expected_seconds=0.3)
        assert result.image_url is not None
        assert studio.download(result.image_url)[:4] == b"RIFF"
    studio.close()  # idempotent
