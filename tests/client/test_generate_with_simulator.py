"""Other models end to end on the simulator: the price comes from the quote, videos have a thumbnail."""

from __future__ import annotations

import io
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from PIL import Image

from prefect_stablestudio.client import (
    InvalidRequest,
    JobFailed,
    PolicyRefused,
    StableStudioClient,
    WalletPolicy,
    build_request,
    catalog_entry,
)
from prefect_stablestudio.client.catalog import GrokGenerate, SeedanceT2V, Veo31Generate
from prefect_stablestudio.client.sync import StableStudio
from prefect_stablestudio.simulator import Simulator
from prefect_stablestudio.simulator.faults import FaultRule


def ledger_for(sim: Any, address: str) -> list[tuple[str, int]]:
    return [(p["route"], p["amount"]) for p in sim.state()["ledger"]["payments"] if p["payer"] == address]


def client(sim: Any, key: str, **kw: Any) -> StableStudioClient:
    return StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url, **kw)


async def test_image_model_generate_pays_the_quoted_price(
    sim: Simulator, key: str, fresh_account: LocalAccount
) -> None:
    async with client(sim, key) as c:
        job = await c.generate(GrokGenerate(prompt="a lighthouse", aspect_ratio="20:9"))
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        assert result.image_url is not None and result.video_url is None
        assert result.media_url == result.image_url
        data = await c.download(result.image_url)
    assert job.type == "grok-generate" and job.payment is not None
    # The client knows no prices: what it paid is what the server's 402 asked.
    assert job.payment.amount == sim.settings.prices["grok/generate"]["default"]
    assert ledger_for(sim, fresh_account.address) == [("grok/generate", job.payment.amount)]
    assert Image.open(io.BytesIO(data)).format == "PNG"
    assert result.job.input == {"prompt": "a lighthouse", "aspect_ratio": "20:9"}


async def test_video_job_yields_video_and_thumbnail(
    make_sim: Any, key: str, fresh_account: LocalAccount
) -> None:
    sim = make_sim(video_latency_seconds=0.4)
    entry = catalog_entry("seedance", "t2v")
    request = build_request("seedance", "t2v", {"prompt": "waves at dusk", "output_resolution": "480p"})
    assert isinstance(request, SeedanceT2V) and entry.media == "video"
    async with client(sim, key) as c:
        job = await c.generate(request)
        result = await c.wait_for_job(job.job_id, timeout=entry.max_wait_seconds, expected_seconds=0.4)
        assert result.video_url is not None and result.thumbnail_url is not None
        assert result.media_url == result.video_url
        video, thumbnail = await c.download(result.video_url), await c.download(result.thumbnail_url)
    assert job.payment is not None and job.payment.amount == 330_000
    assert ledger_for(sim, fresh_account.address) == [("seedance/t2v", 330_000)]
    assert Image.open(io.BytesIO(video)).n_frames > 1
    assert Image.open(io.BytesIO(thumbnail)).format == "PNG"


async def test_the_per_call_cap_still_applies_to_expensive_models(
    sim: Simulator, key: str, fresh_account: LocalAccount
) -> None:
    # Veo 3.1 at 8 s is quoted $3.20, over the default $1 per call: refused before anything is signed.
    async with client(sim, key) as c:
        with pytest.raises(PolicyRefused):
            await c.generate(Veo31Generate(prompt="a storm", duration_seconds="8"))
        assert c.stats.payments_signed == 0
    assert ledger_for(sim, fresh_account.address) == []
    async with client(sim, key, policy=WalletPolicy(max_amount_per_call=2_000_000)) as c:
        job = await c.generate(Veo31Generate(prompt="a storm", duration_seconds="4"))
    assert job.payment is not None and job.payment.amount == 1_600_000


async def test_the_servers_early_validation_speaks_where_the_client_is_lenient(
    sim: Simulator, key: str
) -> None:
    # The client cannot know which URLs are the server's blobs; the server's 400 surfaces, nothing is paid.
    request = build_request("wan-2.6", "i2v", {"prompt": "p", "image": "https://elsewhere.example/a.png"})
    async with client(sim, key) as c:
        with pytest.raises(InvalidRequest) as caught:
            await c.generate(request)
        assert c.stats.payments_signed == 0
    assert caught.value.issues and caught.value.issues[0]["path"] == ["image"]


def test_blocking_facade_generates_too(sim: Simulator, key: str) -> None:
    with StableStudio(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url) as studio:
        job = studio.generate(build_request("gpt-image-2", "generate", {"prompt": "p", "quality": "low"}))
        result = studio.wait_for_job(job.job_id, expected_seconds=0.3)
        assert result.image_url is not None and studio.download(result.image_url)[:8] == b"\x89PNG\r\n\x1a\n"
    assert job.payment is not None and job.payment.amount == 10_000


async def test_a_lost_video_reply_is_paid_once_and_a_failed_job_is_reported(
    make_sim: Any, key: str, fresh_account: LocalAccount
) -> None:
    flaky = make_sim(
        video_latency_seconds=0.3,
        faults=(
            FaultRule(route="sora-2/generate", kind="reset_after_settlement", nth=(1,)),
            FaultRule(route="generate", kind="job_failure", nth=(2,)),
        ),
    )
    async with client(flaky, key, resend_backoff=0.01) as c:
        # The connection drops after the server settled: the re-sent payment is a replay, the job is found.
        job = await c.generate(build_request("sora-2", "generate", {"prompt": "a lost reply"}))
        assert job.resumed
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        assert result.video_url and result.thumbnail_url
        failing = await c.generate(build_request("sora-2", "generate", {"prompt": "fails"}))
        with pytest.raises(JobFailed):
            await c.wait_for_job(failing.job_id, expected_seconds=0.3)
    assert ledger_for(flaky, fresh_account.address) == [("sora-2/generate", 400_000)] * 2


@pytest.mark.parametrize("order", ["before_quote", "after_payment"])
async def test_veo_from_input_images_sends_the_first_frame_in_image_and_the_last_in_last_frame(
    make_sim: Any, key: str, fresh_account: LocalAccount, order: str
) -> None:
    from tests.client.helpers import image_bytes

    sim = make_sim(validation_order=order, video_latency_seconds=0.3)
    async with client(sim, key, policy=WalletPolicy(max_amount_per_call=2_000_000)) as c:
        first, last = await c.upload(image_bytes()), await c.upload(image_bytes(color="navy"))
        entry = catalog_entry("veo-3.1", "generate")
        params = entry.with_images({"prompt": "dusk", "durationSeconds": "4"}, [first, last])
        body = entry.build(params).body()
        job = await c.submit_generation("veo-3.1", "generate", body)
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
        (seen,) = [j for j in await c.list_jobs() if j.job_id == job.job_id]
        # Wrong shapes never leave the client: another route's image field, a last frame without a first.
        before = c.stats.snapshot()
        for wrong in ({"prompt": "dusk", "images": [first]}, {"prompt": "dusk", "lastFrame": last}):
            with pytest.raises(InvalidRequest):
                await c.submit_generation("veo-3.1", "generate", wrong)
        assert c.stats.snapshot() == before
    assert result.video_url is not None
    assert seen.input == {"prompt": "dusk", "durationSeconds": "4", "image": first, "lastFrame": last}
    assert ledger_for(sim, fresh_account.address) == [
        ("upload", 10_000), ("upload", 10_000), ("veo-3.1/generate", 1_600_000)
    ]
