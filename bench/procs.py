"""Processes the benchmark runs beside itself: the simulator, Prefect's API server, and measured workers.

The simulator and Prefect's server run in processes of their own so that their CPU is never counted against
the client being measured; every measurement runs in a fresh worker process so one phase's threads, caches
and heap cannot colour the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

_LISTENING = re.compile(r"listening on (http://\S+)")
STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class SimulatorProcess:
    """A simulator serving from a child process."""

    base_url: str
    pid: int

    @property
    def blob_api_url(self) -> str:
        """The blob API stand-in of this simulator."""
        return f"{self.base_url}/api/blob"

    def state(self) -> dict[str, Any]:
        """`GET /_sim/state`: counters, ledger, balances."""
        response = httpx.get(f"{self.base_url}/_sim/state", timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def requests(self) -> dict[str, int]:
        """Requests served so far, per route."""
        counters: dict[str, int] = self.state()["counters"]["requests"]
        return dict(counters)

    def cpu_seconds(self) -> float:
        """User + system CPU the simulator process has used so far."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of another process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def simulator_process(latency: float, jitter: float = 0.2, seed: int = 0) -> Iterator[SimulatorProcess]:
    """Start the simulator (`python -m prefect_stablestudio.simulator`) on a free loopback port."""
    args = [
        sys.executable,
        "-m",
        "prefect_stablestudio.simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--latency",
        str(latency),
        "--jitter",
        str(jitter),
        "--seed",
        str(seed),
        # Every phase uses fresh wallets; a large default balance keeps the full run from running dry.
        "--default-balance",
        "1000000",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        base_url = None
        while base_url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                base_url = match.group(1)
        if base_url is None:
            raise RuntimeError("the simulator did not start")
        yield SimulatorProcess(base_url=base_url, pid=proc.pid)
    finally:
        _stop(proc)


class PrefectServer:
    """Prefect's API server (no UI) in a child process, with its own PREFECT_HOME and SQLite database.

    It starts in the background: phases that do not need Prefect run meanwhile; `ready()` waits for it.
    """

    def __init__(self, home: str) -> None:
        self.env = prefect_env(home)
        port = _free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.env["PREFECT_API_URL"] = self.api_url
        server_env = {k: v for k, v in self.env.items() if k != "PREFECT_API_URL"}
        server_env["PREFECT_LOGGING_LEVEL"] = "WARNING"  # the server's own request logs; flows keep INFO
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        # A file, not a pipe: under write contention the server logs many tracebacks, and a pipe nobody reads
        # until exit fills up and freezes the server in a write.
        os.makedirs(home, exist_ok=True)
        self.log_path = os.path.join(home, "prefect-server.log")
        self._log = open(self.log_path, "w")  # closed when the server stops
        self.proc = subprocess.Popen(
            args, env=server_env, stdout=subprocess.DEVNULL, stderr=self._log, text=True
        )
        self.started = time.monotonic()
        self._ready = False

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def ready(self, timeout: float = 120) -> dict[str, str]:
        """Wait until the API answers; return the environment for processes that use it."""
        while not self._ready:
            if self.proc.poll() is not None:
                with open(self.log_path) as log:
                    err = log.read()
                raise RuntimeError(f"Prefect's server exited: {err[-2000:]}")
            try:
                self._ready = httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                pass
            if not self._ready:
                if time.monotonic() - self.started > timeout:
                    raise RuntimeError(f"Prefect's server did not start within {timeout:.0f} s")
                time.sleep(0.25)
        return self.env


@contextlib.contextmanager
def prefect_server(home: str) -> Iterator[PrefectServer]:
    """Start Prefect's API once for the whole run, on a free port, state under `home`; stop it at the end."""
    server = PrefectServer(home)
    try:
        yield server
    finally:
        _stop(server.proc)
        server._log.close()


def prefect_env(home: str) -> dict[str, str]:
    """Environment for Prefect processes of this run: state in `home`, no telemetry, no UI.

    Flows log at Prefect's default level (INFO): a nightly pipeline sends its run logs to the API, and the
    benchmark counts that.
    """
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update(
        PREFECT_HOME=home,
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=os.path.join(home, "results"),
        PREFECT_LOGGING_LEVEL="INFO",  # Prefect's default, whatever the caller's environment says
    )
    return env


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_worker(
    spec: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """Run `python -m bench.worker` with `spec` (JSON on stdin); return the JSON it prints last."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench worker {spec.get('mode')} failed (exit {proc.returncode}): {proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result
