"""Crash after payment: SIGKILL the process running a flow right after the paid submit; a rerun (same inputs,
same intent store) makes no new payment and recovers the result.

"Right after" is read from the evidence, never from a clock: the intent store's record (job id persisted) or
the simulator (the signed request arrived and is being held by a slow fault).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.flows import IntentStore, PaymentIntent, edit_image
from prefect_stablestudio.simulator import FaultRule
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")
ROOT = Path(__file__).resolve().parents[2]


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], child: subprocess.Popen[bytes]) -> None:
    """Poll `check` until it holds; fail if the child ends first or nothing happens for a minute."""
    for _ in range(6000):
        if await check():
            return
        if child.poll() is not None:
            out = child.stdout.read().decode(errors="replace") if child.stdout else ""
            raise AssertionError(
                f"the flow process ended (rc {child.returncode}) before {what}:\n{out[-3000:]}"
            )
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def _only_intent(store_dir: Path) -> PaymentIntent | None:
    files = [p for p in store_dir.glob("*.json")] if store_dir.exists() else []
    if len(files) != 1:
        return None
    return await IntentStore(str(store_dir)).get(files[0].stem)


@pytest.mark.parametrize("window", ["job-id-persisted", "signed-and-sent-awaiting-reply"])
@pytest.mark.timeout(180)
async def test_kill_9_after_the_paid_submit_then_a_rerun_pays_nothing_and_recovers(
    make_sim: Any, make_wallet: Any, prefect_api: str, tmp_path: Path, window: str
) -> None:
    if window == "job-id-persisted":
        # Jobs take 3 s, so the process is still polling when its record says "submitted".
        sim = make_sim(latency_seconds=3.0)
    else:
        # The first signed edit request is held for a minute: the process dies waiting for the reply.
        sim = make_sim(faults=(FaultRule(route="flux-edit", kind="slow", on="paid", nth=(1,), delay=60.0),))
    name, wallet, _ = await make_wallet(sim)
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    store_dir = tmp_path / "intents"
    kwargs = {
        "wallet_block": name,
        "image": str(image),
        "prompt": "make it snow",
        "destination": str(tmp_path / "out"),
        "intent_store_url": str(store_dir),
    }
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", json.dumps(kwargs)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        if window == "job-id-persisted":

            async def submitted() -> bool:
                intent = await _only_intent(store_dir)
                return intent is not None and intent.status == "submitted" and intent.job_id is not None

            await _wait_for("the job id was persisted", submitted, child)
        else:

            async def held() -> bool:
                faults = sim.state()["counters"]["faults_injected"]
                intent = await _only_intent(store_dir)
                return (
                    faults.get(f"{EDIT_ROUTE}:slow") == 1 and intent is not None and intent.status == "signed"
                )

            await _wait_for("the signed request reached the server", held, child)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        if child.stdout:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    before = await _only_intent(store_dir)
    assert before is not None and before.payment is not None
    paid_before = payments(sim, wallet.address, EDIT_ROUTE)
    if window == "job-id-persisted":
        assert [p["nonce"] for p in paid_before] == [before.payment.nonce.lower()]
    else:
        assert paid_before == []  # the held request never settled: the process died first

    outcome = await edit_image(**kwargs)

    assert outcome.status == "complete" and not outcome.paid_now
    (edit,) = payments(sim, wallet.address, EDIT_ROUTE)
    assert edit["nonce"] == before.payment.nonce.lower()  # the one authorization signed before the crash
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1  # the upload was not bought again
    after = await IntentStore(str(store_dir)).get(before.key)
    assert after is not None and after.status == "complete" and after.payment == before.payment
    assert outcome.output_uri and Path(outcome.output_uri).read_bytes()
    if window == "job-id-persisted":
        assert outcome.job_id == before.job_id
