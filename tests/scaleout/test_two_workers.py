"""Two `prefect worker` processes drain one sharded job (`edit_sharded`) against a real `prefect server`.

The wallet's lifetime cap pays for 3 of the 6 edits. The parent runs in this test process and starts one
run of the `edit-shard` deployment (from deployments/prefect.yaml) per shard; the workers run them in their
own subprocesses, all reserving from the same caps on the server and writing to one intent store. The
simulator's ledger must never exceed the cap, the refusals must name it, and a rerun must pay nothing and
start no run for shards whose images are all done.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.flows.models import EditItem
from prefect_stablestudio.flows.shards import ShardedReport, edit_sharded
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes
from tests.helpers.prefect_processes import BIN, Processes, run_prefect, save_wallet

pytestmark = pytest.mark.slow

CAP_MICRO_USD = 120_000  # 3 x (upload $0.01 + 0.5 MP edit $0.03)


async def _job(wallet: str, images: list[str], destination: Path) -> ShardedReport:
    report: ShardedReport = await edit_sharded(
        wallet,
        str(destination),
        "make it snow",
        items=[EditItem(images=[image]) for image in images],
        options={"resolution": "0.5 MP"},  # type: ignore[arg-type]  # validated by the flow, as from the UI
        shards=2,
        max_concurrency=3,
        poll_seconds=0.5,
        max_wait_seconds=120,
        fail_on_error=False,
        preflight=False,  # the cap is tested where it refuses each payment, not at the pre-flight
    )
    return report


async def test_two_workers_drain_one_sharded_job_within_one_budget(
    server: tuple[str, dict[str, str]],
    on_server: str,
    procs: Processes,
    make_sim: Callable[..., Any],
    tmp_path: Path,
) -> None:
    _, env = server
    sim = make_sim()
    wallet, address = await save_wallet(sim, max_usd_total="0.12")
    worker_env = env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
    run_prefect(["work-pool", "create", "stablestudio", "--type", "process"], env)
    for name in ("worker-a", "worker-b"):
        procs.start(
            name, [str(BIN / "prefect"), "worker", "start", "--pool", "stablestudio", "--limit", "1"],
            worker_env,
        )
    run_prefect(
        ["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "edit-shard"],
        env | {"STABLESTUDIO_WALLET": wallet},
    )
    images = []
    for i in range(6):
        path = tmp_path / "in" / f"photo-{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(png_bytes((i * 40, 90, 200)))
        images.append(str(path))
    out = tmp_path / "out"

    first = await _job(wallet, images, out)

    ledger = payments(sim, address)
    edits = payments(sim, address, EDIT_ROUTE)
    assert sum(p["amount"] for p in ledger) <= CAP_MICRO_USD, "the one budget was exceeded"
    assert 1 <= len(edits) <= 3
    assert first.found == 6 and first.skipped == 0
    assert first.edited == len(edits) == len(list(out.glob("*-edited.png")))
    assert first.edited + first.failed == 6 and first.missing == 0
    refused = [o for o in first.outcomes if not o.ok]
    assert refused and all(o.status == "refused" and "lifetime cap" in (o.error or "") for o in refused)
    assert first.spent_usd * 1_000_000 == sum(p["amount"] for p in ledger)
    ran = [s for s in first.shard_runs if s.flow_run_id]
    assert ran and all(s.state == "COMPLETED" for s in ran)
    # The shard runs went through the pool's workers (each logs the runs it submits), in other processes.
    logs = procs.tail("worker-a", 400) + procs.tail("worker-b", 400)
    assert all(str(s.flow_run_id) in logs for s in ran), logs[-3000:]
    assert len({s.worker for s in ran}) == len(ran)

    second = await _job(wallet, images, out)

    assert payments(sim, address) == ledger, "a rerun paid"
    assert second.spent_usd == 0 and second.edited == 0
    assert second.skipped == first.edited
    finished = [s for s in first.shard_runs if s.failed == 0]  # every image of these shards is saved
    assert second.shards_skipped == len(finished)
    assert all(o.status == "refused" for o in second.outcomes) and len(second.outcomes) == first.failed
