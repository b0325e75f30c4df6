"""The plugin inside a Prefect project that has its own `flows/` and `blocks/` packages (the most common
layout): the user's names stay theirs, ours come from `prefect_stablestudio`, and `edit_images` runs as a
subflow of the user's own flow against the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

USER_FLOWS = '''
"""The user's own flows package: the name `flows` is theirs."""
from prefect import flow


@flow(name="prepare-photos")
def prepare(folder: str) -> list[str]:
    """Write two images of the user's own into `folder` (their pipeline's first step)."""
    import io, pathlib
    from PIL import Image

    paths = []
    for i, color in enumerate([(200, 30, 30), (30, 200, 30)]):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 24), color).save(buffer, format="PNG")
        path = pathlib.Path(folder) / f"photo-{i}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths
'''

USER_BLOCKS = '''
"""The user's own blocks package: the name `blocks` is theirs too."""
USER_BLOCKS_MARKER = "the user's blocks"
'''

USER_MAIN = '''
import json, sys

from prefect import flow
from prefect.plugins import load_prefect_collections

import blocks
from flows import prepare
from prefect_stablestudio import StableStudioWallet, edit_images


@flow(name="user-pipeline")
async def pipeline(wallet_block: str, folder: str, out: str) -> dict:
    photos = prepare(folder)
    result = await edit_images(
        wallet_block, photos, destination=out, prompt="make it snow", expected_job_seconds=0.2
    )
    return {"saved": [o.output_uri for o in result.outcomes if o.status == "complete"]}


if __name__ == "__main__":
    import asyncio

    report = asyncio.run(pipeline(sys.argv[1], sys.argv[2], sys.argv[3]))
    collections = load_prefect_collections()
    report["collection_module"] = collections["prefect_stablestudio"].__name__
    report["user_blocks"] = getattr(sys.modules["blocks"], "USER_BLOCKS_MARKER", None)
    report["wallet_class"] = StableStudioWallet.__module__
    print(json.dumps(report))
'''


@pytest.mark.smoke
async def test_the_plugin_composes_inside_a_project_with_its_own_flows_and_blocks(
    tmp_path: Path, sim: Any, make_wallet: Any, prefect_api: str
) -> None:
    project = tmp_path / "my-project"
    for package, source in (("flows", USER_FLOWS), ("blocks", USER_BLOCKS)):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(textwrap.dedent(source))
    (project / "main.py").write_text(textwrap.dedent(USER_MAIN))
    (tmp_path / "photos").mkdir()
    name, _wallet, _key = await make_wallet(sim)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "main.py", name, str(tmp_path / "photos"), str(tmp_path / "edited")],
        cwd=project, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(Path(p).name for p in report["saved"]) == ["photo-0-edited.png", "photo-1-edited.png"]
    assert all(Path(p).stat().st_size > 0 for p in report["saved"])
    assert report["collection_module"] == "prefect_stablestudio.blocks"
    assert report["user_blocks"] == "the user's blocks"
    assert report["wallet_class"] == "prefect_stablestudio.blocks.wallet"

    # `prefect block register` finds the block from the user's project directory.
    registered = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_stablestudio.blocks"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert registered.returncode == 0, registered.stderr[-2000:]
    block_type = httpx.get(f"{prefect_api}/block_types/slug/stablestudio-wallet")
    assert block_type.status_code == 200 and block_type.json()["name"] == "StableStudio Wallet"
