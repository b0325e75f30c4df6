"""One procedure for one paid job: the Flux 2 Pro edit and another route behave the same on each failure.

Each test runs twice, once per route, through the public flows (`edit_image`, `generate`), both with one input
image (an upload) and one paid job, against the simulator and a real Prefect API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.client.errors import JobFailed, StableStudioError
from prefect_stablestudio.flows import EditFailed, IntentStore, edit_image
from prefect_stablestudio.flows.generate import generate
from prefect_stablestudio.simulator.faults import FaultRule
from tests.helpers.ledger import UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")

ROUTES = ["flux-2-pro/edit", "nano-banana-pro/edit"]

Run = Callable[..., Awaitable[tuple[str, str]]]


def runner(route: str, name: str, tmp_path: Path) -> Run:
    """`run(**extra)` -> (job id, output URI) through the route's flow; raises what the flow raises."""
    source = tmp_path / "cat.png"
    if not source.exists():
        source.write_bytes(png_bytes((9, 8, 7)))
    common: dict[str, Any] = dict(
        wallet_block=name, prompt="a cat in the snow", destination=str(tmp_path / "out"),
        expected_job_seconds=0.2, intent_store_url=str(tmp_path / "intents"),
    )

    async def run(**extra: Any) -> tuple[str, str]:
        if route == "flux-2-pro/edit":
            outcome = await edit_image(image=str(source), **common, **extra)
            return str(outcome.job_id), str(outcome.output_uri)
        model, operation = route.split("/")
        made = await generate(
            model=model, operation=operation, images=[str(source)], preflight=False, **common, **extra
        )
        return made.job_id, made.output_uri

    return run


def _requests(sim: Any, prefix: str) -> int:
    return sum(n for k, n in sim.state()["counters"]["requests"].items() if k.startswith(prefix))


@pytest.mark.parametrize("route", ROUTES)
async def test_a_failed_job_is_recorded_failed_and_a_rerun_neither_pays_nor_polls(
    route: str, make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim()
    sim.set_faults([FaultRule(route=route, kind="job_failure", nth=[1])])
    name, wallet, _ = await make_wallet(sim)
    run = runner(route, name, tmp_path)
    with pytest.raises((EditFailed, JobFailed)):
        await run()
    (record,) = [r for r in await IntentStore(str(tmp_path / "intents")).records() if r.job_id]
    assert record.status == "failed" and record.reason
    paid, polled = len(payments(sim, wallet.address)), _requests(sim, "GET /api/jobs")

    with pytest.raises(StableStudioError, match="not paying again"):
        await run()
    assert len(payments(sim, wallet.address, route)) == 1 and len(payments(sim, wallet.address)) == paid
    assert _requests(sim, "GET /api/jobs") == polled  # the record says failed: not asked again


@pytest.mark.parametrize("route", ROUTES)
async def test_an_upload_that_failed_before_paying_is_retried_and_pays_one_fee(
    route: str, make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim()
    # The first quote request of the upload gets a 503: nothing was signed, so the upload is tried again.
    sim.set_faults([FaultRule(route="upload", kind="http_5xx", nth=[1], on="unpaid")])
    name, wallet, _ = await make_wallet(sim)
    job_id, output = await runner(route, name, tmp_path)()
    assert Path(output).exists() and job_id
    assert _requests(sim, "POST /api/upload") >= 3  # the refused quote, the retried quote, the paid upload
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1
    assert len(payments(sim, wallet.address, route)) == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_an_upload_that_keeps_failing_before_paying_pays_nothing_for_the_job(
    route: str, make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim()
    sim.set_faults([FaultRule(route="upload", kind="http_5xx", rate=1.0, on="unpaid")])
    name, wallet, _ = await make_wallet(sim)
    with pytest.raises((EditFailed, StableStudioError)):
        await runner(route, name, tmp_path)()
    assert _requests(sim, "POST /api/upload") == 3  # three tries (flows/retries.py), none of them paid
    assert payments(sim, wallet.address) == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_rerun_after_success_reuses_the_result_and_pays_nothing(
    route: str, make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim()
    name, wallet, _ = await make_wallet(sim)
    run = runner(route, name, tmp_path)
    first = await run()
    paid, downloads = len(payments(sim, wallet.address)), _requests(sim, "GET /blobs")
    assert paid == 2  # one upload, one job

    assert await run() == first
    assert len(payments(sim, wallet.address)) == paid
    assert _requests(sim, "GET /blobs") == downloads  # the intact file is trusted, not downloaded again
