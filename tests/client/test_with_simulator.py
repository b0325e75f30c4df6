"""End to end against the simulator (a separate implementation of the wire protocol) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import fsspec
import pytest
from eth_account.signers.local import LocalAccount
from PIL import Image

from prefect_stablestudio.client import (
    AuthenticationFailed,
    EditRequest,
    InvalidRequest,
    JobFailed,
    JobNotFound,
    JobTimeout,
)
from prefect_stablestudio.simulator.faults import FaultRule
from tests.client.helpers import assert_payment_verifies, image_bytes
from tests.client.helpers import simulator_client as client


def ledger_for(sim: Any, address: str) -> list[tuple[str, int]]:
    return [(p["route"], p["amount"]) for p in sim.state()["ledger"]["payments"] if p["payer"] == address]


async def test_upload_edit_wait_download(sim, key: str, fresh_account: LocalAccount) -> None:
    seen: list[str] = []
    async with client(sim, key) as c:
        uploaded = await c.upload_detailed(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="make it snow", images=[uploaded.blob_url]))
        result = await c.wait_for_job(
            job.job_id, expected_seconds=0.3, on_progress=lambda j: seen.append(j.status)
        )
        assert result.image_url is not None
        data = await c.download(result.image_url)
        assert c.siwx_mode_in_use == "client_nonce"
        # One request per poll when the server takes our own nonce.
        assert c.stats.requests["jobs"] == len(seen)
    assert Image.open(io.BytesIO(data)).format == "WEBP"
    assert seen[-1] == "complete"
    assert job.payment is not None and job.settlement is not None and job.settlement.success
    assert ledger_for(sim, fresh_account.address) == [("upload", 10_000), ("flux-2-pro/edit", 45_000)]
    pay_to = sim.settings.pay_to
    assert_payment_verifies(uploaded.payments[0].header, fresh_account.address, 10_000, pay_to)
    assert_payment_verifies(job.payment.header, fresh_account.address, 45_000, pay_to)
    assert {job.payment.nonce, uploaded.payments[0].nonce} == {
        p["nonce"] for p in sim.state()["ledger"]["payments"] if p["payer"] == fresh_account.address
    }


async def test_strict_server_makes_auto_mode_fall_back_to_challenges(make_sim, key: str) -> None:
    strict = make_sim(siwx_accept_client_nonce=False)
    async with client(strict, key) as c:
        url = await c.upload(image_bytes())
        assert c.siwx_mode_in_use == "challenge"  # the confirm step found out
        job = await c.submit_edit(EditRequest(prompt="p", images=[url], resolution="0.5 MP"))
        before = c.stats.requests["jobs"]
        await c.get_job(job.job_id)
        assert c.stats.requests["jobs"] - before == 2  # challenge + proof, no wasted optimistic try
    assert strict.state()["counters"]["siwx_failures_total"] >= 1


async def test_client_nonce_only_mode_reports_the_refusal(make_sim, key: str) -> None:
    strict = make_sim(siwx_accept_client_nonce=False)
    async with client(strict, key, siwx_mode="client_nonce") as c:
        with pytest.raises(AuthenticationFailed):
            await c.get_job("anything")


async def test_challenge_mode_against_the_default_server(sim, key: str) -> None:
    async with client(sim, key, siwx_mode="challenge") as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="p", images=[url]))
        polls: list[Any] = []
        await c.wait_for_job(job.job_id, expected_seconds=0.3, on_progress=polls.append)
        assert c.stats.requests["jobs"] == 2 * len(polls)
        assert c.siwx_mode_in_use == "challenge"


@pytest.mark.parametrize("job_timestamps", [True, False])
async def test_a_client_learns_the_turnaround_and_then_polls_about_once_per_job(
    make_sim, key: str, job_timestamps: bool
) -> None:
    # Jobs take 0.4 s, but the caller expects 0.25 s: the first poll (at 80 % of that) finds each job of the
    # first wave still loading. The client learns the turnaround from the server's createdAt/updatedAt, or,
    # without them, from the progress reports, and polls the next wave's jobs when they should be done.
    steady = make_sim(latency_seconds=0.4, jitter=0.0, job_timestamps=job_timestamps)
    async with client(steady, key) as c:
        url = await c.upload(image_bytes())

        async def polls_of_one_edit() -> int:
            job = await c.submit_edit(EditRequest(prompt="steady", images=[url]))
            seen: list[Any] = []
            await c.wait_for_job(job.job_id, expected_seconds=0.25, on_progress=seen.append)
            assert seen[-1].status == "complete"
            return len(seen)

        first_wave = await asyncio.gather(*(polls_of_one_edit() for _ in range(4)))
        second_wave = await asyncio.gather(*(polls_of_one_edit() for _ in range(4)))
    assert first_wave == [2, 2, 2, 2]
    # Each learned first poll is due at the job's end, so most second-wave jobs are found done at once. On a
    # loaded machine a few polls land a few ms early (the end learned from progress reports runs short) and
    # poll once more; without what the client learned every job would poll twice, as in the first wave.
    assert sum(second_wave) < sum(first_wave)


@pytest.mark.parametrize("payment_identifier", [False, True])
async def test_lost_reply_after_settlement_is_paid_once(
    make_sim, key: str, fresh_account, payment_identifier
) -> None:
    flaky = make_sim(
        payment_identifier=payment_identifier,
        faults=(FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),),
    )
    async with client(flaky, key, resend_backoff=0.01) as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="lost reply", images=[url]))
        result = await c.wait_for_job(job.job_id, expected_seconds=0.3)
    assert result.image_url
    assert ledger_for(flaky, fresh_account.address) == [("upload", 10_000), ("flux-2-pro/edit", 45_000)]
    assert job.resumed is (not payment_identifier)


async def test_expired_upload_token_buys_a_second_ticket(make_sim, key: str, fresh_account) -> None:
    flaky = make_sim(faults=(FaultRule(route="upload", kind="expired_upload_token", nth=(1,)),))
    async with client(flaky, key) as c:
        result = await c.upload_detailed(image_bytes("JPEG"))
    assert len(result.payments) == 2 and result.content_type == "image/jpeg"
    assert ledger_for(flaky, fresh_account.address) == [("upload", 10_000), ("upload", 10_000)]


async def test_uploads_stream_from_path_and_fsspec_urls(
    sim, key: str, tmp_path, s3_bucket, s3fs_filesystem
) -> None:
    path = tmp_path / "photo.gif"
    path.write_bytes(image_bytes("GIF"))
    with fsspec.open("memory://core-tests/photo.webp", "wb") as f:
        f.write(image_bytes("WEBP"))
    s3fs_filesystem.pipe(f"{s3_bucket}/in/photo.png", image_bytes("PNG"))
    async with client(sim, key) as c:
        from_path = await c.upload_detailed(path)
        from_memory = await c.upload_detailed("memory://core-tests/photo.webp")
        from_s3 = await c.upload_detailed(f"s3://{s3_bucket}/in/photo.png")
        downloaded = await c.download(from_s3.blob_url)
    assert (from_path.content_type, from_memory.content_type, from_s3.content_type) == (
        "image/gif",
        "image/webp",
        "image/png",
    )
    assert from_path.pathname.endswith("photo.gif")
    assert downloaded == image_bytes("PNG")


async def test_not_an_image_or_too_large_is_refused_before_paying(
    sim, key: str, fresh_account, tmp_path
) -> None:
    bmp = tmp_path / "x.bmp"
    bmp.write_bytes(image_bytes("BMP"))
    async with client(sim, key, max_upload_bytes=1000) as c:
        with pytest.raises(InvalidRequest, match="JPEG, PNG, GIF or WebP"):
            await c.upload(bmp)
        with pytest.raises(InvalidRequest, match="upload limit"):
            await c.upload(image_bytes("PNG", "white") + b"\0" * 2000)
        with pytest.raises(InvalidRequest, match="does not match"):
            await c.upload(image_bytes("PNG"), content_type="image/jpeg")
        with pytest.raises(InvalidRequest, match="cannot read"):
            await c.upload(tmp_path / "missing.png")
        assert c.stats.total_requests == 0
    assert ledger_for(sim, fresh_account.address) == []


async def test_failed_and_foreign_and_unknown_jobs(make_sim, key: str) -> None:
    flaky = make_sim(faults=(FaultRule(route="flux-edit", kind="job_failure", nth=(1,)),))
    async with client(flaky, key) as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="p", images=[url]))
        with pytest.raises(JobFailed) as failed:
            await c.wait_for_job(job.job_id, expected_seconds=0.3)
        with pytest.raises(JobNotFound):
            await c.get_job("no-such-job")
    assert failed.value.job_id == job.job_id
    async with client(flaky, "0x" + "42" * 32) as other:
        with pytest.raises(JobNotFound, match="not found or not yours"):
            await other.wait_for_job(job.job_id, expected_seconds=0.1)


async def test_deadline_and_rate_limits(make_sim, key: str) -> None:
    slow = make_sim(latency_seconds=30.0)
    async with client(slow, key) as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="p", images=[url]))
        with pytest.raises(JobTimeout) as info:
            await c.wait_for_job(job.job_id, timeout=0.6, expected_seconds=0.2)
    assert info.value.last_job is not None and info.value.last_job.status in ("pending", "loading")

    limited = make_sim(faults=(FaultRule(route="job", kind="rate_limited_429", nth=(1,), retry_after=0),))
    async with client(limited, key) as c:
        url = await c.upload(image_bytes())
        job = await c.submit_edit(EditRequest(prompt="p", images=[url]))
        calls: list[str] = []

        async def on_progress(j: Any) -> None:
            calls.append(j.status)

        result = await c.wait_for_job(job.job_id, expected_seconds=0.3, on_progress=on_progress)
    assert result.image_url and calls[-1] == "complete"
    assert limited.state()["counters"]["faults_injected_total"] == 1
