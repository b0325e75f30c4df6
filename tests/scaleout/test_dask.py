"""`edit_images` under prefect-dask's `DaskTaskRunner`, on a local Dask cluster of two worker processes.

1. `edit_images` itself, unchanged, with a Dask task runner: it runs and pays once per edit (its tasks are
   awaited on the flow's loop, so the cluster is not used; flows/chunked.py says why).
2. `edit_images_chunked` puts chunks of the batch on the Dask workers (other processes): inputs and results
   cross by pickle, clients are made inside the tasks, and one budget on Prefect's server (a lifetime cap
   for 3 of 6 edits) holds across the workers.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from prefect_dask import DaskTaskRunner

from prefect_stablestudio.flows.chunked import ChunkedResult, edit_images_chunked
from prefect_stablestudio.flows.edit import edit_images
from prefect_stablestudio.flows.models import BatchResult, EditItem, EditOptions
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes

OPTIONS = EditOptions(resolution="0.5 MP")


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, set[int]]]:
    """Two Dask worker processes; yields the scheduler address and the workers' pids."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as local,
        Client(local) as client,
    ):
        pids = set(client.run(os.getpid).values())
        yield local.scheduler_address, pids


def _images(folder: Path, count: int) -> list[EditItem]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(count):
        path = folder / f"img-{i}.png"
        path.write_bytes(png_bytes((i * 30, 60, 160)))
        items.append(EditItem(images=[str(path)]))
    return items


async def test_edit_images_runs_unchanged_with_a_dask_task_runner(
    cluster: tuple[str, set[int]], sim: Any, make_wallet: Callable[..., Any], tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    items = _images(tmp_path / "in", 3)
    on_dask = edit_images.with_options(task_runner=DaskTaskRunner(address=cluster[0]))

    result: BatchResult = await on_dask(
        name, items, str(tmp_path / "out"), prompt="make it snow", options=OPTIONS,
        intent_store_url=str(tmp_path / "intents"),
    )

    assert [o.status for o in result.outcomes] == ["complete"] * 3
    assert len(payments(sim, wallet.public_address, EDIT_ROUTE)) == 3
    assert pickle.loads(pickle.dumps(result)) == result  # noqa: S301 - our own bytes


async def test_chunks_run_on_dask_workers_under_one_budget(
    cluster: tuple[str, set[int]], make_sim: Callable[..., Any], make_wallet: Callable[..., Any],
    tmp_path: Path,
) -> None:
    sim = make_sim()
    # 3 edits fit: 3 x (upload $0.01 + 0.5 MP edit $0.03) = $0.12; 6 are asked for over 2 workers.
    name, wallet, _ = await make_wallet(sim, max_usd_total="0.12")
    items = _images(tmp_path / "in", 6)
    on_dask = edit_images_chunked.with_options(task_runner=DaskTaskRunner(address=cluster[0]))

    def run() -> ChunkedResult:
        result: ChunkedResult = on_dask(
            name, items, str(tmp_path / "out"), prompt="make it snow", options=OPTIONS, chunks=2,
            max_concurrency=3, intent_store_url=str(tmp_path / "intents"), fail_on_error=False,
            preflight=False,  # the cap is tested where it refuses each payment, not at the pre-flight
        )
        return result

    result = await asyncio.to_thread(run)

    ran_in = {int(worker.rsplit(":", 1)[1]) for worker in result.workers}
    assert ran_in <= cluster[1] and os.getpid() not in ran_in
    ledger = payments(sim, wallet.public_address)
    edits = payments(sim, wallet.public_address, EDIT_ROUTE)
    assert sum(p["amount"] for p in ledger) <= 120_000
    assert 1 <= len(edits) <= 3 and len(result.succeeded) == len(edits)
    assert all(o.status == "refused" and "lifetime cap" in (o.error or "") for o in result.failed)
    assert len(result.outcomes) == 6
    assert result.spent_usd * 1_000_000 == sum(p["amount"] for p in ledger)
