"""Real Prefect servers, workers and serve processes as subprocesses, for the deployment and scale-out tests.

The fixtures that start them are in tests/fixtures/prefect_server.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from eth_account import Account
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import FlowRun

from prefect_stablestudio.blocks import StableStudioWallet

__all__ = [
    "BIN",
    "ROOT",
    "STARTUP_SECONDS",
    "Processes",
    "artifacts_of",
    "free_port",
    "pause",
    "run_prefect",
    "save_wallet",
    "wait_final",
]

ROOT = Path(__file__).resolve().parents[2]
"""The repository: subprocesses run from here."""
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 60.0
RUN_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """Subprocesses of one test, each in its own process group, logs to files; all stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running.append((name, process))
        return process

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.running):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


async def save_wallet(sim: Any, **caps: Any) -> tuple[str, str]:
    """Save a wallet block for a fresh key against `sim`; returns (block name, address)."""
    account = Account.create()
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    wallet = StableStudioWallet(
        private_key="0x" + bytes(account.key).hex(),
        base_url=sim.base_url,
        blob_api_url=sim.blob_api_url,
        **caps,
    )
    await wallet.save(name, overwrite=True)
    return name, account.address


async def wait_final(run_ids: list[Any], procs: Processes, names: list[str]) -> list[FlowRun]:
    """The flow runs once all are final; fails with the named processes' logs after RUN_SECONDS."""
    deadline = time.monotonic() + RUN_SECONDS
    async with get_client() as client:
        while True:
            runs = [await client.read_flow_run(run_id) for run_id in run_ids]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            assert time.monotonic() < deadline, "runs not finished: " + "\n".join(
                f"--- {n}\n{procs.tail(n)}" for n in names
            )
            await pause(0.5)


async def pause(seconds: float) -> None:
    """Wait between polls of a condition (never to time a result)."""
    await asyncio.sleep(seconds)


async def artifacts_of(run_id: Any) -> list[Any]:
    """The artifacts of one flow run."""
    async with get_client() as client:
        return list(
            await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
        )


def run_prefect(args: list[str], env: dict[str, str]) -> str:
    """Run the `prefect` CLI with `env`; its stdout, or a failure with both outputs."""
    done = subprocess.run(
        [str(BIN / "prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
