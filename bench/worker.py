"""Measured phases in a fresh process: `python -m bench.worker` reads a JSON spec on stdin, prints JSON.

Modes:
- `raw`: edits with the raw-protocol script (`bench.raw`).
- `client`: edits with a bare `StableStudioClient` (one client, one pool).
- `flow`: one `edit_images` flow run per point (needs PREFECT_API_URL).
- `uploads`: small uploads with the client (the upload share of the ideal batch time).
- `upload`: one upload of a generated file of `size_mb` with the client, for peak memory.
- `save`: one result of `size_mb` streamed from a loopback HTTP server (its own process) into a local folder,
  then into S3 (moto, its own process), through the flows' save path, for peak memory.

`BENCH_PROFILE=/tmp/prof` in the environment writes a cProfile of the measured points to /tmp/prof.<mode>.

A spec lists `points`, each [edits, concurrency], run one after the other in this process. One unmeasured
warm-up edit against a fast simulator (`warmup_*` URLs) comes first, so lazy imports and first connections
are not counted. Each point reports wall time, this process's CPU time (all threads), its RSS before and
at its peak, and the simulator's request counts and CPU for that point.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx

PROMPT = "make it snow"
# BENCH_PROFILE=<path>: a cProfile of the measured points only (the event loop's thread), for finding where
# the CPU goes; written to <path>.<mode>. The profiler slows the phase down: its figures are not results.
_PROFILER = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
Edit = Callable[[int], Awaitable[Any]]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        match = re.search(rf"^{field}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of each live thread of this process by Python thread name (Linux): where CPU goes."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    seconds: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        name = re.sub(r"[-_]?\d+$", "", names.get(int(tid), "other"))
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return seconds


QUANTILES = (0.0, 0.5, 0.9, 0.99, 1.0)


class GcClock:
    """Collections per generation and the CPU they took, from `gc.callbacks` (the event loop's thread)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.cpu_s = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.counts[info["generation"]] += 1
            self.cpu_s[info["generation"]] += time.thread_time() - self._started


def png_bytes(size: int = 64) -> bytes:
    """A small real PNG (the same bytes every time, so the simulator renders each result once)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (40, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


class SimProbe:
    """The simulator's request counters and CPU, read around each point."""

    def __init__(self, base_url: str, pid: int | None, prefect_pid: int | None = None) -> None:
        self.base_url = base_url
        self.pid = pid
        self.prefect_pid = prefect_pid

    def requests(self) -> dict[str, int]:
        data = httpx.get(f"{self.base_url}/_sim/state", timeout=30).json()
        return dict(data["counters"]["requests"])

    def cpu(self) -> float:
        if self.pid is None:
            return 0.0
        from bench.procs import process_cpu_seconds

        return process_cpu_seconds(self.pid)

    def prefect_cpu(self) -> float:
        """CPU of Prefect's API server so far (0 when it is not in this run)."""
        if self.prefect_pid is None:
            return 0.0
        from bench.procs import process_cpu_seconds

        return process_cpu_seconds(self.prefect_pid)


async def measure(work: Callable[[], Awaitable[int]], sim: SimProbe | None = None) -> dict[str, Any]:
    """Run `work` (returns how many edits succeeded) and measure it."""
    before = await asyncio.to_thread(sim.requests) if sim else {}
    sim_cpu = sim.cpu() if sim else 0.0
    prefect_cpu = sim.prefect_cpu() if sim else 0.0
    reset_ok = reset_peak_rss()
    rss_before = _status_kb("VmRSS")
    threads0 = thread_cpu_seconds()
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    if _PROFILER is not None:
        _PROFILER.enable()
    try:
        ok = await work()
    finally:
        if _PROFILER is not None:
            _PROFILER.disable()
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    threads = thread_cpu_seconds()
    gc.callbacks.remove(gc_clock)
    result: dict[str, Any] = {
        "gc_collections": gc_clock.counts,
        "gc_cpu_s": [round(v, 4) for v in gc_clock.cpu_s],
        "wall_s": wall,
        "cpu_s": cpu,
        # Threads that ended during the point are missing here (their CPU is in cpu_s).
        "thread_cpu_s": {k: round(v - threads0.get(k, 0.0), 3) for k, v in threads.items()},
        "ok": ok,
        "rss_before_mb": rss_before / 1024,
        "rss_peak_mb": _status_kb("VmHWM") / 1024,
        "peak_is_phase_peak": reset_ok,
    }
    if sim:
        after = await asyncio.to_thread(sim.requests)
        result["sim_requests"] = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        result["sim_cpu_s"] = sim.cpu() - sim_cpu
        result["prefect_server_cpu_s"] = sim.prefect_cpu() - prefect_cpu
    return result


async def gather_bounded(n: int, concurrency: int, one: Edit) -> int:
    """Run one(0..n-1) with at most `concurrency` at once; return how many succeeded."""
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int) -> bool:
        async with gate:
            await one(i)
        return True

    return sum(await asyncio.gather(*(run(i) for i in range(n))))


async def run_points(spec: dict[str, Any], one: Edit, warm: Edit) -> list[dict[str, Any]]:
    """Warm up once, then measure every point (indices never repeat across points)."""
    await warm(-1)
    sim = SimProbe(spec["base_url"], spec.get("sim_pid"))
    results: list[dict[str, Any]] = []
    offset = 0
    for n, concurrency in spec["points"]:

        def work(n: int = n, concurrency: int = concurrency, start: int = offset) -> Awaitable[int]:
            return gather_bounded(n, concurrency, lambda i: one(start + i))

        point = await measure(work, sim)
        point.update(edits=n, concurrency=concurrency)
        results.append(point)
        offset += n
    return results


async def run_raw(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    from eth_account import Account

    from bench.raw import RawClient

    data = png_bytes()
    # The client's default pool size, so both pay the same for httpx's pool.
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        account = Account.create()
        client = RawClient(account, spec["base_url"], http)
        warm = RawClient(account, spec["warmup_base_url"], http)

        async def one(i: int) -> None:
            await client.edit(data, f"in-{i}.png", PROMPT, out_dir, spec["blob_api_url"], spec["latency"])

        async def warm_up(i: int) -> None:
            await warm.edit(data, "warm.png", PROMPT, out_dir, spec["warmup_blob_api_url"], 0.1)

        return await run_points(spec, one, warm_up)


async def run_client(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    from eth_account import Account

    from prefect_stablestudio.client import EditRequest, StableStudioClient

    data = png_bytes()
    key = "0x" + bytes(Account.create().key).hex()

    async def edit(client: StableStudioClient, i: int, latency: float) -> None:
        blob_url = await client.upload(data, filename=f"in-{i}.png")
        job = await client.submit_edit(EditRequest(prompt=PROMPT, images=[blob_url]))
        result = await client.wait_for_job(job.job_id, expected_seconds=latency)
        assert result.image_url is not None
        image = await client.download(result.image_url)
        await asyncio.to_thread(_write, os.path.join(out_dir, f"in-{i}-edited.webp"), image)

    async with (
        StableStudioClient(
            key, base_url=spec["base_url"], blob_api_url=spec["blob_api_url"], timeout=60
        ) as c,
        StableStudioClient(
            key, base_url=spec["warmup_base_url"], blob_api_url=spec["warmup_blob_api_url"]
        ) as w,
    ):
        points = await run_points(spec, lambda i: edit(c, i, spec["latency"]), lambda i: edit(w, i, 0.1))
        points[-1]["siwx_mode_in_use"] = c.siwx_mode_in_use
        return points


async def run_flow(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    from decimal import Decimal

    from eth_account import Account

    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.flows import EditItem, edit_images

    data = png_bytes()
    in_dir = tempfile.mkdtemp(prefix="in-", dir=out_dir)
    key = "0x" + bytes(Account.create().key).hex()
    names = {}
    for which, prefix in (("main", ""), ("warm", "warmup_")):
        wallet = StableStudioWallet(
            private_key=key,
            base_url=spec[f"{prefix}base_url"],
            blob_api_url=spec[f"{prefix}blob_api_url"],
            # Spend caps on, as a nightly pipeline runs: every payment reserves budget on Prefect's server.
            max_usd_per_run=Decimal(1000) if spec.get("caps", True) else None,
            max_usd_per_day=Decimal(100000) if spec.get("caps", True) else None,
        )
        names[which] = f"bench-{which}-{os.getpid()}-{time.time_ns()}"
        await wallet.save(names[which], overwrite=True)

    def path(i: int) -> str:
        target = os.path.join(in_dir, f"in-{i}.png")
        if not os.path.exists(target):
            _write(target, data)
        return target

    async def batch(which: str, items: list[str], concurrency: int, latency: float) -> int:
        result = await edit_images(
            names[which],
            [EditItem(images=[p]) for p in items],
            os.path.join(out_dir, "out"),
            prompt=PROMPT,
            max_concurrency=concurrency,
            expected_job_seconds=latency,
            intent_store_url=os.path.join(out_dir, "intents"),
            fail_on_error=False,
        )
        seconds = sorted(o.seconds for o in result.outcomes)
        # Each edit's own time, from reading its input to the intent's "complete": min, p50, p90, p99, max.
        edit_seconds[:] = [seconds[min(int(f * len(seconds)), len(seconds) - 1)] for f in QUANTILES]
        failed = [o for o in result.outcomes if not o.ok]
        if failed:
            print(f"{len(failed)} flow edits failed; first: {failed[0].error}", file=sys.stderr)
        return len(result.succeeded)

    edit_seconds: list[float] = []
    await batch("warm", [path(-1)], 1, 0.1)
    sim = SimProbe(spec["base_url"], spec.get("sim_pid"), spec.get("prefect_pid"))
    results: list[dict[str, Any]] = []
    offset = 0
    for n, concurrency in spec["points"]:
        items = [path(offset + i) for i in range(n)]

        def work(items: tuple[str, ...] = tuple(items), c: int = concurrency) -> Awaitable[int]:
            return batch("main", list(items), c, spec["latency"])

        point = await measure(work, sim)
        point.update(edits=n, concurrency=concurrency, edit_seconds=list(edit_seconds))
        results.append(point)
        offset += n
    return results


async def run_uploads(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    from eth_account import Account

    from prefect_stablestudio.client import StableStudioClient

    data = png_bytes()
    key = "0x" + bytes(Account.create().key).hex()
    async with StableStudioClient(
        key, base_url=spec["base_url"], blob_api_url=spec["blob_api_url"], timeout=60
    ) as client:

        async def one(i: int) -> None:
            await client.upload(data, filename=f"in-{i}.png")

        return await run_points(spec, one, one)


async def run_upload(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    from eth_account import Account

    from prefect_stablestudio.client import StableStudioClient

    path = os.path.join(out_dir, "big.png")
    make_big_png(path, int(spec["size_mb"] * 1024 * 1024))
    key = "0x" + bytes(Account.create().key).hex()
    async with StableStudioClient(
        key, base_url=spec["base_url"], blob_api_url=spec["blob_api_url"], timeout=300
    ) as client:
        await client.upload(png_bytes(), filename="warm.png")  # connections and lazy imports

        async def one() -> int:
            await client.upload(path)
            return 1

        measured = await measure(one)
    measured["size_mb"] = int(spec["size_mb"] * 1024 * 1024) / (1024 * 1024)
    return [measured]


async def run_save(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    """Peak RSS while streaming a `size_mb` result to a local folder and to S3; servers in other processes."""
    from prefect_stablestudio.flows.result_files import write_chunks
    from prefect_stablestudio.flows.steps import open_download

    size = int(spec["size_mb"] * 1024 * 1024)
    served = os.path.join(out_dir, "served")
    os.makedirs(served)
    make_big_png(os.path.join(served, "result.png"), size)
    make_big_png(os.path.join(served, "warm.png"), 4096)
    sizes = {"result.png": size, "warm.png": 4096}
    with contextlib.ExitStack() as stack:
        files = stack.enter_context(_serving([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                              "--directory", served], "http.server"))
        s3 = stack.enter_context(_serving([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                                           "-H", "127.0.0.1"], "moto"))
        options = {"client_kwargs": {"endpoint_url": s3}, "key": "bench", "secret": "bench"}
        import s3fs

        s3fs.S3FileSystem(**options).mkdir("bench-results")
        points: list[dict[str, Any]] = []
        for where, destination in (
            ("local", os.path.join(out_dir, "saved", "result.png")),
            ("s3", "s3://bench-results/result.png"),
        ):

            async def save(name: str, target: str) -> int:
                async with open_download(f"{files}/{name}", max_bytes=size + 1) as result:
                    written = await write_chunks(result.chunks(), target, options)
                return 1 if written.size == sizes[name] else 0

            await save("warm.png", destination)  # lazy imports, the first connections
            point = await measure(functools.partial(save, "result.png", destination))
            point.update(destination=where, size_mb=size / (1024 * 1024))
            points.append(point)
            if where == "local":
                os.unlink(destination)
    return points


@contextlib.contextmanager
def _serving(command: list[str], what: str) -> Any:
    """Run a loopback server on a free port in its own process; yield its base URL once it answers."""
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flag = "-p" if what == "moto" else None
    args = [*command, flag, str(port)] if flag else [*command, str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{what} ended (exit {proc.returncode})") from None
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{what} never answered on {url}")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def make_big_png(path: str, size: int) -> None:
    """A file of `size` bytes that starts like a PNG (signature and IHDR) and is filler after that."""
    head = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000100000001008060000001ff3ff61")
    block = b"\0" * (1024 * 1024)
    with open(path, "wb") as handle:
        handle.write(head)
        remaining = size - len(head)
        while remaining > 0:
            handle.write(block[: min(remaining, len(block))])
            remaining -= len(block)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


MODES: dict[str, Callable[[dict[str, Any], str], Coroutine[Any, Any, list[dict[str, Any]]]]] = {
    "raw": run_raw,
    "client": run_client,
    "flow": run_flow,
    "uploads": run_uploads,
    "upload": run_upload,
    "save": run_save,
}


def main() -> None:
    """Read the spec, run the phase in a temporary directory, print the result as one JSON line."""
    spec = json.loads(sys.stdin.read())
    with tempfile.TemporaryDirectory(prefix="stablestudio-bench-") as out_dir:
        points: list[dict[str, Any]] = asyncio.run(MODES[spec["mode"]](spec, out_dir))
        if _PROFILER is not None:
            _PROFILER.dump_stats(f"{os.environ['BENCH_PROFILE']}.{spec['mode']}")
    print(json.dumps({"mode": spec["mode"], "points": points}))


if __name__ == "__main__":
    main()
