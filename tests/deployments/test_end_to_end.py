"""End to end on a real `prefect server start` (SQLite) bound to 127.0.0.1.

1. `prefect deploy --all --prefect-file deployments/prefect.yaml` registers the three deployments on a process
   work pool; a `prefect worker` runs a UI-style run of `ui-edit` (created through the API as the UI creates
   it) and a run of the scheduled pipeline; artifacts, outputs and the simulator's ledger are checked.
2. Two `deployments/serve.py` processes share one wallet whose lifetime cap pays for 3 edits; 6 are asked
   for across them at once. The ledger shows at most 3 edit payments and the refusals say which cap refused.

The simulator runs in this test process; the flow runs (in the worker's and servers' subprocesses) reach it
through the base URL saved in the wallet block. Every subprocess is stopped at teardown, even on failure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes
from tests.helpers.prefect_processes import (
    BIN,
    STARTUP_SECONDS,
    Processes,
    artifacts_of,
    pause,
    run_prefect,
    save_wallet,
    wait_final,
)

pytestmark = pytest.mark.slow


async def test_prefect_yaml_deploys_and_a_worker_runs_ui_and_pipeline_runs(
    server: tuple[str, dict[str, str]],
    on_server: str,
    procs: Processes,
    make_sim: Callable[..., Any],
    tmp_path: Path,
) -> None:
    _, env = server
    sim = make_sim()
    wallet, address = await save_wallet(sim)
    source, dest = tmp_path / "incoming", tmp_path / "edited"
    source.mkdir()
    for name, colour in (("a.png", (200, 0, 0)), ("b.png", (0, 200, 0))):
        (source / name).write_bytes(png_bytes(colour))
    deploy_env = env | {
        "STABLESTUDIO_WALLET": wallet,
        "STABLESTUDIO_SOURCE_PREFIX": str(source),
        "STABLESTUDIO_DEST_PREFIX": str(dest),
        "STABLESTUDIO_PROMPT": "make it autumn",
    }
    run_prefect(["work-pool", "create", "stablestudio", "--type", "process"], env)
    run_prefect(["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], deploy_env)

    async with get_client() as client:
        pipeline = await client.read_deployment_by_name("edit-new-images/scheduled-edits")
        ui_edit = await client.read_deployment_by_name("edit-image/ui-edit")
        await client.read_deployment_by_name("edit-images/ui-batch")
        # The scheduled one: cron, the prefix parameters from the environment, one run at a time.
        assert [s.schedule.cron for s in pipeline.schedules] == ["*/15 * * * *"]  # type: ignore[union-attr]
        assert pipeline.parameters["source_prefix"] == str(source)
        assert pipeline.work_pool_name == "stablestudio"
        await client.pause_deployment(pipeline.id)  # only the runs this test creates may spend
        # The UI one: typed parameters become a form (enums for drop-downs, bounds for sliders).
        schema = ui_edit.parameter_openapi_schema or {}
        options = schema["definitions"]["EditOptions"]["properties"]
        assert options["resolution"]["enum"] == ["0.5 MP", "1 MP", "2 MP"]
        assert options["output_quality"]["maximum"] == 100
        assert set(schema["required"]) >= {"wallet_block", "image", "prompt", "destination"}
        assert ui_edit.parameters == {"wallet_block": wallet}

    procs.start(
        "worker", [str(BIN / "prefect"), "worker", "start", "--pool", "stablestudio", "--limit", "2"], env
    )
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes((20, 20, 220)))
    async with get_client() as client:
        # What the UI's "Custom run" form sends: the deployment's defaults merged with the form's values.
        ui_run = await client.create_flow_run_from_deployment(
            ui_edit.id,
            parameters={
                "wallet_block": wallet,
                "image": str(photo),
                "prompt": "add a rainbow",
                "destination": str(tmp_path / "ui-out"),
                "options": {"resolution": "0.5 MP", "output_format": "png"},
            },
        )
        pipeline_run = await client.create_flow_run_from_deployment(pipeline.id)
    ui_done, pipeline_done = await wait_final([ui_run.id, pipeline_run.id], procs, ["worker"])
    assert ui_done.state is not None and ui_done.state.is_completed(), procs.tail("worker")
    assert pipeline_done.state is not None and pipeline_done.state.is_completed(), procs.tail("worker")

    assert (tmp_path / "ui-out" / "photo-edited.png").stat().st_size > 0
    assert sorted(p.name for p in dest.glob("*.png")) == ["a-edited.png", "b-edited.png"]
    edits = payments(sim, address, EDIT_ROUTE)
    assert sorted(p["amount"] for p in edits) == [30_000, 45_000, 45_000]  # one 0.5 MP, two 1 MP
    artifacts = await artifacts_of(ui_run.id)
    assert {"table", "markdown", "progress"} <= {a.type for a in artifacts}
    assert any((a.key or "").startswith("stablestudio-edit-") for a in artifacts)  # the result's link
    (report,) = [a for a in await artifacts_of(pipeline_run.id) if a.key == "stablestudio-pipeline"]
    assert "| 2 | 0 | 2 | 0 | 0 |" in str(report.data)  # found 2, none done before, 2 edited


async def test_two_serve_processes_sharing_one_budget_do_not_overspend_it(
    server: tuple[str, dict[str, str]],
    on_server: str,
    procs: Processes,
    make_sim: Callable[..., Any],
    tmp_path: Path,
) -> None:
    _, env = server
    sim = make_sim()
    # 3 edits fit: 3 x (upload $0.01 + 0.5 MP edit $0.03) = $0.12.
    wallet, address = await save_wallet(sim, max_usd_total="0.12")
    for suffix in ("-a", "-b"):
        procs.start(
            f"serve{suffix}",
            [sys.executable, "deployments/serve.py", f"--wallet={wallet}", f"--suffix={suffix}", "--limit=1"],
            env,
        )
    images = []
    for i in range(6):
        path = tmp_path / f"in{i}.png"
        path.write_bytes(png_bytes((i * 40, 100, 30)))
        images.append(str(path))

    run_ids = []
    async with get_client() as client:
        for suffix, batch in (("-a", images[:3]), ("-b", images[3:])):
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:  # the serve process registers its deployments when it starts
                try:
                    deployment = await client.read_deployment_by_name(f"edit-images/ui-batch{suffix}")
                    break
                except ObjectNotFound:
                    alive = all(p.poll() is None for _, p in procs.running)
                    assert alive and time.monotonic() < deadline, procs.tail(f"serve{suffix}")
                    await pause(0.25)
            run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={
                    "items": [{"images": [image]} for image in batch],  # as the form sends them
                    "prompt": "p",
                    "destination": str(tmp_path / f"out{suffix}"),
                    "options": {"resolution": "0.5 MP"},
                    "max_concurrency": 3,
                    "fail_on_error": False,
                    # The shared cap is tested where it refuses each payment; a pre-flight would refuse the
                    # second run whole (tests/flows/test_quotes.py covers that).
                    "preflight": False,
                },
            )
            run_ids.append(run.id)
    runs = await wait_final(run_ids, procs, ["serve-a", "serve-b"])
    assert all(r.state is not None and r.state.is_completed() for r in runs), procs.tail("serve-a")

    ledger = payments(sim, address)
    edits = [p for p in ledger if p["route"] == EDIT_ROUTE]
    assert 1 <= len(edits) <= 3
    assert sum(p["amount"] for p in ledger) <= 120_000  # never beyond the cap, uploads included
    rows = []
    for run_id in run_ids:
        tables = [a for a in await artifacts_of(run_id) if a.type == "table"]
        assert tables, "each run reports its edits"
        rows += [row for table in tables for row in _table_rows(table.data)]
    assert len(rows) == 6
    complete = [r for r in rows if r["status"] == "complete"]
    refused = [r for r in rows if r["status"] == "refused"]
    assert len(complete) == len(edits) and len(complete) + len(refused) == 6
    assert all("lifetime cap" in r["error"] for r in refused)
    saved = list((tmp_path / "out-a").glob("*")) + list((tmp_path / "out-b").glob("*"))
    assert len(saved) == len(edits)


def _table_rows(data: Any) -> list[dict[str, Any]]:
    import json

    parsed = json.loads(data) if isinstance(data, str) else data
    return list(parsed)
