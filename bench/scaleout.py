"""`python -m bench.scaleout [--quick] [--json | --markdown]`: one sharded job over 1, 2 and 4 workers.

Each point starts W `prefect worker` processes (`--limit 1`) on a process pool, and a parent process that
runs `edit_sharded` over the same N images cut into W shards (one `edit-shard` run per worker, 64 edits in
flight in each). Everything talks to one Prefect server (SQLite, its own process) and one simulator (its
own process, 5 s jobs by default), so their CPU is measured apart from the workers':

- wall: the parent flow's call, from listing to the aggregated report;
- requests: the simulator's counters for the point;
- CPU per edit: workers + their flow-run processes + the parent (getrusage of reaped children), and apart
  from that the Prefect server's and the simulator's (from /proc);
- payments == edits: the simulator's ledger for the point's fresh wallet against the edits saved.

`--from FILE` renders a saved result. Results go to bench/results/scaleout-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.procs import (
    SimulatorProcess,
    prefect_server,
    process_cpu_seconds,
    simulator_process,
)
from prefect_stablestudio.client.money import plain_dollars_from_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
EDIT_ROUTE = "POST /api/generate/flux-2-pro/edit"
POOL = "stablestudio"
PROMPT = "make it snow"


@dataclass(frozen=True)
class Sizes:
    """How big the measurement is."""

    images: int = 1000
    workers: tuple[int, ...] = (1, 2, 4)
    concurrency: int = 64  # per shard; edit_images allows at most 64
    latency: float = 5.0


FULL = Sizes()
QUICK = Sizes(images=40, workers=(1, 2), concurrency=16, latency=1.0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _prefect(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _online_workers(api_url: str) -> int:
    response = httpx.post(f"{api_url}/work_pools/{POOL}/workers/filter", json={}, timeout=10)
    response.raise_for_status()
    return sum(1 for w in response.json() if w.get("status") == "ONLINE")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _make_inputs(folder: Path, count: int) -> None:
    from bench.worker import png_bytes

    data = png_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"in-{i:05d}.png").write_bytes(data)


class ApiServer(Protocol):
    """What a point needs of Prefect's server: its URL, its process and the environment to reach it."""

    api_url: str

    @property
    def pid(self) -> int: ...

    def ready(self, timeout: float = 120) -> dict[str, str]: ...


def run_point(
    workers: int, sizes: Sizes, server: ApiServer, sim: SimulatorProcess, work: Path, logs: Path
) -> dict[str, Any]:
    """W workers drain one sharded job of `sizes.images` images; measure it."""
    env = server.ready() | {"PREFECT_WORKER_QUERY_SECONDS": "2"}
    load_before = os.getloadavg()[0]
    source, dest = work / f"in-{workers}", work / f"out-{workers}"
    _make_inputs(source, sizes.images)
    procs: list[subprocess.Popen[bytes]] = []
    cpu_before = _children_cpu()
    server_cpu, sim_cpu = process_cpu_seconds(server.pid), sim.cpu_seconds()
    requests_before = sim.requests()
    try:
        for i in range(workers):
            log = (logs / f"worker-{workers}-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "worker",
                        "start",
                        "--pool",
                        POOL,
                        "--limit",
                        "1",
                        "--name",
                        f"w{workers}-{i}",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 120
        while _online_workers(server.api_url) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers not online; see {logs}")
            time.sleep(0.5)
        spec = {
            "base_url": sim.base_url,
            "blob_api_url": sim.blob_api_url,
            "source": str(source),
            "dest": str(dest),
            "shards": workers,
            "concurrency": sizes.concurrency,
            "latency": sizes.latency,
        }
        done = subprocess.run(
            [sys.executable, "-m", "bench.scaleout", "--parent"],
            input=json.dumps(spec),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        (logs / f"parent-{workers}.log").write_text(done.stderr)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"parent failed (exit {done.returncode}): {done.stderr[-3000:]}")
        parent: dict[str, Any] = json.loads(lines[-1])
        # A shard run reports its final state just before its process exits: wait for the workers to reap
        # them, so that their CPU is counted (getrusage counts only reaped children).
        deadline = time.monotonic() + 60
        while any(_has_children(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        _stop(procs)
    state = sim.state()
    after = state["counters"]["requests"]
    address = parent["address"].lower()
    paid = [p for p in state["ledger"]["payments"] if p["payer"].lower() == address]
    edits = parent["edited"]
    requests = {k: v - requests_before.get(k, 0) for k, v in after.items() if v != requests_before.get(k, 0)}
    client_cpu = _children_cpu() - cpu_before
    return {
        "workers": workers,
        "images": sizes.images,
        "concurrency_per_worker": sizes.concurrency,
        "latency_s": sizes.latency,
        "wall_s": parent["wall_s"],
        "ideal_s": math.ceil(sizes.images / (workers * sizes.concurrency)) * sizes.latency,
        "edited": edits,
        "failed": parent["failed"],
        "edits_per_s": edits / parent["wall_s"] if parent["wall_s"] else 0.0,
        "requests": requests,
        "requests_total": sum(requests.values()),
        "edit_payments": sum(1 for p in paid if p["route"] == "flux-2-pro/edit"),
        "payments_total": len(paid),
        "spent_usd": parent["spent_usd"],
        "ledger_usd": plain_dollars_from_atomic(sum(p["amount"] for p in paid)),
        "cpu_workers_s": client_cpu,
        "cpu_parent_s": parent["cpu_s"],
        "cpu_server_s": process_cpu_seconds(server.pid) - server_cpu,
        "cpu_sim_s": sim.cpu_seconds() - sim_cpu,
        "shard_workers": parent["shard_workers"],
        # Other processes on the machine show here (1-minute load average, before and after the point).
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def _has_children(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


async def _parent(spec: dict[str, Any]) -> dict[str, Any]:
    """In the parent process: a fresh wallet block (caps on, as a nightly job runs), then the sharded job."""
    from decimal import Decimal

    from eth_account import Account

    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.flows.shards import edit_sharded

    account = Account.create()
    wallet = StableStudioWallet(
        private_key="0x" + bytes(account.key).hex(),
        base_url=spec["base_url"],
        blob_api_url=spec["blob_api_url"],
        max_usd_per_run=Decimal(1000),
        max_usd_per_day=Decimal(100000),
    )
    name = f"scaleout-{os.getpid()}-{time.time_ns()}"
    await wallet.save(name, overwrite=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
    report = await edit_sharded(
        name,
        spec["dest"],
        PROMPT,
        source_prefix=spec["source"],
        shards=spec["shards"],
        max_concurrency=spec["concurrency"],
        expected_job_seconds=spec["latency"],
        poll_seconds=1.0,
        fail_on_error=False,
    )
    wall = time.perf_counter() - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu0,
        "address": account.address,
        "edited": report.edited,
        "failed": report.failed + report.missing,
        "spent_usd": str(report.spent_usd),
        "shard_workers": sorted({s.worker for s in report.shard_runs if s.worker}),
    }


def _deploy(env: dict[str, str]) -> None:
    _prefect(["work-pool", "create", POOL, "--type", "process"], env)
    _prefect(
        ["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "edit-shard"], env
    )


def run(sizes: Sizes, progress: Any = print, keep: bool = False) -> dict[str, Any]:
    """Start the simulator and Prefect's server once, then measure every worker count."""
    folder: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="stablestudio-scaleout-"))
        if keep
        else tempfile.TemporaryDirectory(prefix="stablestudio-scaleout-")
    )
    with folder as tmp:
        if keep:
            progress(f"logs and results kept in {tmp}")
        work, logs = Path(tmp), Path(tmp) / "logs"
        logs.mkdir()
        with prefect_server(str(work / "prefect")) as server, simulator_process(sizes.latency) as sim:
            progress("deploying edit-shard on a process pool")
            _deploy(server.ready())
            points = []
            for workers in sizes.workers:
                progress(f"{workers} workers, {sizes.images} images")
                points.append(run_point(workers, sizes, server, sim, work, logs))
                progress(f"  {points[-1]['wall_s']:.1f} s, {points[-1]['edited']} edited")
        locked = Path(server.log_path).read_text(errors="replace").count("database is locked")
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sizes": asdict(sizes),
        "points": points,
        "server_database_locked_errors": locked,
    }


def markdown(result: dict[str, Any]) -> str:
    """The README table."""
    s = result["sizes"]
    out = [
        f"{s['images']} images, simulator latency {s['latency']} s, {s['concurrency']} edits in flight per "
        f"worker, {result['machine']['cpus']} cores ({result['when']}).",
        "",
        "| workers | wall s | ideal s | edits/s | speed-up | requests | req/edit | payments == edits "
        "| CPU ms/edit: workers | Prefect server | simulator |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = result["points"][0]["edits_per_s"] or 1.0
    for p in result["points"]:
        n = p["edited"] or 1
        same = "yes" if p["edit_payments"] == p["edited"] and not p["failed"] else "**no**"
        out.append(
            f"| {p['workers']} | {p['wall_s']:.1f} | {p['ideal_s']:.0f} | {p['edits_per_s']:.2f} "
            f"| {p['edits_per_s'] / base:.2f} x | {p['requests_total']} | {p['requests_total'] / n:.2f} "
            f"| {same} ({p['edit_payments']} / {p['edited']}) "
            f"| {1000 * p['cpu_workers_s'] / n:.0f} | {1000 * p['cpu_server_s'] / n:.0f} "
            f"| {1000 * p['cpu_sim_s'] / n:.0f} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run (or render) the scale-out measurement."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 images, 1 s jobs, 1 and 2 workers")
    parser.add_argument("--images", type=int, help="images per point")
    parser.add_argument("--workers", help="comma-separated worker counts, e.g. 1,2,4")
    parser.add_argument("--json", action="store_true", help="print the JSON result")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--from", dest="saved", metavar="FILE", help="render a saved result")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, results) afterwards")
    parser.add_argument("--parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.parent:
        print(json.dumps(asyncio.run(_parent(json.loads(sys.stdin.read())))))
        return 0
    if args.saved:
        result = json.loads(Path(args.saved).read_text())
    else:
        sizes = QUICK if args.quick else FULL
        if args.images:
            sizes = Sizes(**{**asdict(sizes), "images": args.images})
        if args.workers:
            sizes = Sizes(**{**asdict(sizes), "workers": tuple(int(w) for w in args.workers.split(","))})
        result = run(
            sizes, progress=lambda what: print(f"· {what}", file=sys.stderr, flush=True), keep=args.keep
        )
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"scaleout-{'quick' if args.quick else 'full'}"
        for path in (RESULTS / f"{name}-{stamp}.json", RESULTS / f"latest-{name}.json"):
            path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1) if args.json else markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
