"""How `edit_images` spreads a batch over task runs: few task runs, one client for the batch, own records.

The edits of a batch share a client (one connection pool) and run at once; each must still pay under its
own intent record, be retried on its own, and show in the run's artifacts and logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from prefect_stablestudio.flows import edit_images
from prefect_stablestudio.flows.edit import edits_per_task_run
from prefect_stablestudio.simulator import FaultRule
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")

FAST: dict[str, Any] = {"expected_job_seconds": 0.2}


def images(folder: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        path.write_bytes(png_bytes((i * 30 % 256, 90, 200)))
        paths.append(str(path))
    return paths


async def run_details(flow_run_id: Any) -> tuple[list[Any], list[Any]]:
    """The task runs and artifacts of one flow run, read back through the API."""
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return list(task_runs), list(artifacts)


def test_task_runs_per_batch_size() -> None:
    assert [edits_per_task_run(n) for n in (1, 8, 9, 200, 10_000)] == [1, 1, 2, 25, 100]
    assert edits_per_task_run(200, requested=1) == 1
    assert edits_per_task_run(5, requested=0) == 1


async def test_concurrent_edits_on_one_client_each_pay_under_their_own_record(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    paths = images(tmp_path, 7)
    state = await edit_images(
        name, paths, str(tmp_path / "out"), prompt="make it snow", max_concurrency=7, edits_per_task=3,
        intent_store_url=str(tmp_path / "intents"), return_state=True, **FAST,
    )
    result = await state.result()
    assert [o.status for o in result.outcomes] == ["complete"] * 7

    # Three task runs (3 + 3 + 1 edits), named after their first image.
    task_runs, artifacts = await run_details(state.state_details.flow_run_id)
    names = sorted(t.name for t in task_runs)
    assert names == ["Edit img0.png and 2 more", "Edit img3.png and 2 more", "Edit img6.png"]
    assert all(t.state is not None and t.state.is_completed() for t in task_runs)

    # Seven payments, and each record holds its own: the nonce the simulator settled for that edit's job.
    settled = {p["nonce"].lower(): p for p in payments(sim, wallet.address, EDIT_ROUTE)}
    assert len(settled) == 7
    # A record file is a log of JSON lines, the last one current: every line must be this edit's.
    files = (tmp_path / "intents").glob("*.json")
    logs = [[json.loads(line) for line in p.read_text().splitlines() if line] for p in files]
    records = [log[-1] for log in logs]
    assert len(records) == 7
    for log in logs:
        assert {line["key"] for line in log} == {log[-1]["key"]}
        nonces = {line["payment"]["nonce"] for line in log if line.get("payment")}
        assert nonces == {log[-1]["payment"]["nonce"]}
    by_job = {o.job_id: o for o in result.outcomes}
    assert len(by_job) == 7
    for record in records:
        assert record["status"] == "complete"
        # The nonce settled for this very job: a hook of another edit never wrote into this record.
        assert settled[record["payment"]["nonce"].lower()]["resource_id"] == record["job_id"]
        outcome = by_job[record["job_id"]]
        assert record["key"] == outcome.idempotency_key
        # The record's inputs are this edit's own image, uploaded once.
        assert [i["uri"] for i in record["inputs"]] == outcome.images
    assert len({r["payment"]["nonce"] for r in records}) == 7

    # Small batch: an artifact per edit, and the progress artifact ends at 100 %.
    keys = [a.key for a in artifacts if a.key]
    assert sum(1 for k in keys if k.startswith("stablestudio-edit-")) == 7
    progress = [a for a in artifacts if a.type == "progress"]
    assert [float(a.data) for a in progress] == [100.0]  # type: ignore[arg-type]


async def test_a_task_run_with_a_failed_edit_ends_failed_and_the_others_finish(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, _, _ = await make_wallet(sim)
    paths = images(tmp_path, 3)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    state = await edit_images(
        name, [*paths, str(bad)], str(tmp_path / "out"), prompt="make it snow", edits_per_task=2,
        artifact_per_edit=False, intent_store_url=str(tmp_path / "intents"), fail_on_error=False,
        return_state=True, **FAST,
    )
    result = await state.result()
    assert [o.status for o in result.outcomes] == ["complete", "complete", "complete", "failed"]
    task_runs, artifacts = await run_details(state.state_details.flow_run_id)
    states = {t.name: t.state for t in task_runs}
    assert set(states) == {"Edit img0.png and 1 more", "Edit img2.png and 1 more"}
    assert states["Edit img0.png and 1 more"].is_completed()  # type: ignore[union-attr]
    failed = states["Edit img2.png and 1 more"]
    assert failed is not None and failed.is_failed()
    assert "1 of 2 edits failed" in (failed.message or "") and "bad.png" in (failed.message or "")
    assert not any((a.key or "").startswith("stablestudio-edit-") for a in artifacts)  # asked for none


async def test_a_transient_failure_after_paying_is_retried_without_paying_again(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    # The first result download fails with a 503: the edit's second attempt resumes the paid job.
    server = make_sim(faults=(FaultRule(route="blob-get", kind="http_5xx", nth=(1,)),))
    name, wallet, _ = await make_wallet(server)
    (path,) = images(tmp_path, 1)
    result = await edit_images(  # the same image twice: one logical edit, the second item reuses the first
        name, [path, path], str(tmp_path / "out"), prompt="make it snow",
        intent_store_url=str(tmp_path / "intents"), **FAST,
    )
    assert [o.status for o in result.outcomes] == ["complete", "complete"]
    assert sum(server.state()["counters"]["faults_injected"].values()) == 1
    assert len(payments(server, wallet.address, EDIT_ROUTE)) == 1  # one logical edit, paid once


async def test_a_large_batch_logs_tenths_not_lines_per_edit_and_skips_per_edit_artifacts(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, _, _ = await make_wallet(sim)
    paths = images(tmp_path, 24)
    state = await edit_images(
        name, paths, str(tmp_path / "out"), prompt="make it snow", max_concurrency=24,
        intent_store_url=str(tmp_path / "intents"), return_state=True, **FAST,
    )
    result = await state.result()
    assert len(result.succeeded) == 24
    flow_run_id = state.state_details.flow_run_id
    task_runs, artifacts = await run_details(flow_run_id)
    assert len(task_runs) == 8  # 24 edits, 3 per task run
    assert not any((a.key or "").startswith("stablestudio-edit-") for a in artifacts)
    keys = {a.key for a in artifacts}
    assert keys >= {"stablestudio-edits", "stablestudio-summary", "stablestudio-progress"}

    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    messages = [log.message for log in logs]
    tenths = [m for m in messages if " of 24 edits done: " in m]
    assert len(tenths) == 10 and tenths[-1] == "24 of 24 edits done: 24 saved, 0 failed"
    assert not any(m.startswith("edit of ") for m in messages)  # per edit: DEBUG only
    assert any(m.startswith("24 of 24 edits saved") for m in messages)
