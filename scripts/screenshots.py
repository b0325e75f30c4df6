"""Screenshots of the Prefect UI for the README: the wallet block's form (key masked) and a run's artifacts.

    make screenshots            # or: .venv/bin/python scripts/screenshots.py [--out docs/images]

What it does, all on 127.0.0.1 with throwaway state:

1. finds Debian's Chromium (/usr/bin/chromium); when it is missing it runs `apt-get install -y chromium`
   (as root; otherwise it says which command to run) and nothing else is installed;
2. starts `prefect server start` on a free port with a temporary PREFECT_HOME and PREFECT_UI_API_URL set, so
   the UI finds its API on that port;
3. starts the StableStudio simulator, saves a wallet block for a fresh throwaway key and runs `edit_images`
   on two sample images against that server;
4. drives headless Chromium to screenshot the block's edit form (wallet-block.png), the flow run
   (flow-run.png) and its artifacts (run-summary.png, run-table.png), and shrinks the PNGs (palette,
   optimised) into the output folder.

It is not part of the test suite (it needs Chromium and takes ~1 minute).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
BLOCK_NAME = "studio-wallet"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=30000",
]


def ensure_chromium() -> str:
    """The Chromium binary, installed with apt-get when missing (the only thing this script installs)."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("Chromium is missing: run `sudo apt-get install -y chromium`, then this script again.")
    print("Installing Debian's chromium package (apt-get install -y chromium)...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True)  # noqa: S607
    return CHROMIUM


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    """`prefect server start` on 127.0.0.1:port, its UI pointed at its own API; waits until healthy."""
    import httpx

    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home / "server"),
        "PREFECT_UI_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    prefect = Path(sys.executable).parent / "prefect"
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own prefect binary, fixed arguments
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"prefect server exited; see {home / 'server.log'}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.terminate()
    sys.exit("prefect server did not become healthy in 90 s")


async def prepare(work: Path) -> tuple[str, str, dict[str, str]]:
    """Save the wallet block and run one batch; return the block document id, flow run id, artifact ids."""
    from eth_account import Account
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.console import quiet_prefect_console
    from prefect_stablestudio.editing import run_edits
    from prefect_stablestudio.flows.models import EditOptions
    from prefect_stablestudio.samples import write_sample_images
    from prefect_stablestudio.simulator import SimulatorSettings, run_simulator_in_thread

    quiet_prefect_console()
    account = Account.create()
    os.chdir(work)  # short relative paths read better in the artifacts
    images = [p.relative_to(work) for p in write_sample_images(work / "inputs")[:2]]
    settings = SimulatorSettings(latency_seconds=1.0, funded={account.address: Decimal(5)}, default_balance=0)
    with run_simulator_in_thread(settings) as sim:
        wallet = StableStudioWallet(
            private_key="0x" + bytes(account.key).hex(),
            base_url=sim.base_url,
            blob_api_url=sim.blob_api_url,
            max_usd_per_call=Decimal("0.10"),
            max_usd_per_run=Decimal("1"),
            max_usd_per_day=Decimal("5"),
            max_usd_total=Decimal("20"),
        )
        await wallet.save(BLOCK_NAME, overwrite=True)
        run = await run_edits(
            BLOCK_NAME,
            [str(p) for p in images],
            "Turn this into a soft watercolor painting",
            "results",
            EditOptions(resolution="1 MP", output_format="png"),
        )
    async with get_client() as client:
        document = await client.read_block_document_by_name(BLOCK_NAME, block_type_slug="stablestudio-wallet")
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run.flow_run_id or "0" * 32)]),
                key=ArtifactFilterKey(any_=["stablestudio-summary", "stablestudio-edits"]),
            )
        )
    if run.flow_run_id is None:
        sys.exit("the flow run has no id")
    return str(document.id), run.flow_run_id, {str(a.key): str(a.id) for a in artifacts}


def screenshot(chromium: str, url: str, target: Path, profile: Path, width: int = 1400) -> None:
    """One headless Chromium screenshot of `url`, shrunk to a palette PNG."""
    from PIL import Image

    raw = profile / "raw.png"
    subprocess.run(  # noqa: S603 - the Chromium binary and fixed flags
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--window-size={width},900",
            f"--user-data-dir={profile / 'chrome'}",
            f"--screenshot={raw}",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=128).save(target, optimize=True)
    print(f"  {target} ({target.stat().st_size // 1024} KB) <- {url}")


def main(argv: list[str] | None = None) -> int:
    """Run the whole sequence; return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    args = parser.parse_args(argv)
    chromium = ensure_chromium()
    work = Path(tempfile.mkdtemp(prefix="stablestudio-screens-"))
    port = free_port()
    server = start_server(work, port)
    try:
        # This process is a client of that server, with its own throwaway home.
        os.environ |= {
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_HOME": str(work / "client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        block_id, run_id, artifacts = asyncio.run(prepare(work))
        args.out.mkdir(parents=True, exist_ok=True)
        ui = f"http://127.0.0.1:{port}"
        print("Screenshots:")
        screenshot(chromium, f"{ui}/blocks/block/{block_id}/edit", args.out / "wallet-block.png", work)
        # The run page itself: its task timeline. (Its Artifacts tab cannot be preselected by URL: the UI
        # hides that tab until the run has loaded and falls back to Logs, so the artifacts get pages of
        # their own below.)
        screenshot(chromium, f"{ui}/runs/flow-run/{run_id}", args.out / "flow-run.png", work)
        # The table is wide (tx hash, output path): a wider window shows every column.
        for key, name, width in (
            ("stablestudio-summary", "run-summary.png", 1400),
            ("stablestudio-edits", "run-table.png", 2400),
        ):
            if key not in artifacts:
                sys.exit(f"the run has no {key} artifact")
            screenshot(chromium, f"{ui}/artifacts/artifact/{artifacts[key]}", args.out / name, work, width)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
