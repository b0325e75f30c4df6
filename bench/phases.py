"""`python -m bench.phases raw client flow [--edits N] [--concurrency C]`: chosen phases of the batch only.

For quick A/B checks while working on CPU or wall time: the same simulator (5 s jobs, no jitter), Prefect
server and workers as `python -m bench`, but only the named phases, printed one line each. The full suite
stays the reference for figures; these lines are for comparing two versions on the same machine minutes apart.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile

from bench.procs import prefect_server, run_worker, simulator_process
from bench.suite import requests_per_job

PHASES = ("raw", "client", "flow")


def main(argv: list[str] | None = None) -> int:
    """Run the named phases (each in a fresh worker, one after the other) and print wall and CPU per edit."""
    parser = argparse.ArgumentParser(prog="python -m bench.phases", description=__doc__)
    parser.add_argument("phases", nargs="+", choices=PHASES)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1, help="run the phases this many times, interleaved")
    args = parser.parse_args(argv)
    n, c = args.edits, args.concurrency
    workdir = tempfile.mkdtemp(prefix="stablestudio-phases-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        prefect = None
        if "flow" in args.phases:
            prefect = stack.enter_context(prefect_server(os.path.join(workdir, "prefect-home")))
        sim = stack.enter_context(simulator_process(args.latency, 0.0))
        fast = stack.enter_context(simulator_process(0.2, 0.2))
        env = prefect.ready() if prefect else None
        cpu: dict[str, list[float]] = {phase: [] for phase in args.phases}
        for phase in [phase for _ in range(args.repeat) for phase in args.phases]:
            spec = {
                "mode": phase,
                "base_url": sim.base_url,
                "blob_api_url": sim.blob_api_url,
                "sim_pid": sim.pid,
                "warmup_base_url": fast.base_url,
                "warmup_blob_api_url": fast.blob_api_url,
                "points": [[n, c]],
                "latency": args.latency,
                "prefect_pid": prefect.pid if prefect else None,
            }
            (point,) = run_worker(spec, env=env if phase == "flow" else None)["points"]
            cpu[phase].append(point["cpu_s"] / n * 1000)
            print(
                f"{phase:7} {point['ok']}/{n} edits, {c} at once: wall {point['wall_s']:.2f} s, "
                f"CPU {point['cpu_s'] / n * 1000:.2f} ms/edit, "
                f"{requests_per_job(point.get('sim_requests', {})):.2f} polls/job, "
                f"Prefect server CPU {point.get('prefect_server_cpu_s', 0.0) / n * 1000:.2f} ms/edit",
                flush=True,
            )
            threads = sorted(point.get("thread_cpu_s", {}).items(), key=lambda kv: -kv[1])
            print("        threads, ms/edit: " + ", ".join(f"{k} {v / n * 1e3:.2f}" for k, v in threads if v))
            pairs = zip(point["gc_collections"], point["gc_cpu_s"], strict=True)
            gc_ms = " ".join(f"gen{g} {c}x {s * 1000:.0f} ms" for g, (c, s) in enumerate(pairs))
            print(f"        collector: {gc_ms}")
            if "edit_seconds" in point:
                quantiles = " ".join(f"{v:.2f}" for v in point["edit_seconds"])
                print(f"        seconds per edit, min p50 p90 p99 max: {quantiles}")
        if args.repeat > 1:
            for phase, values in cpu.items():
                print(f"{phase:7} CPU ms/edit: median {statistics.median(values):.2f}, min {min(values):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
