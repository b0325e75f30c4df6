"""A batch leaves the process that runs it as it found it: the collector, logging, the environment."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.flows import edit_images
from tests.helpers.ledger import png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


def _host_state() -> dict[str, Any]:
    root = logging.getLogger()
    return {
        "gc_enabled": gc.isenabled(),
        "gc_threshold": gc.get_threshold(),
        "gc_frozen": gc.get_freeze_count(),
        "root_level": root.level,
        "root_handlers": list(root.handlers),
        "environ": dict(os.environ),
        "loop_policy": type(asyncio.get_event_loop_policy()),
    }


async def test_a_batch_changes_nothing_in_the_host_process(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, _wallet, _key = await make_wallet(sim)
    images = []
    for i in range(3):
        path = tmp_path / f"in-{i}.png"
        path.write_bytes(png_bytes((10 * i, 20, 30)))
        images.append(str(path))
    # The host's own choices, which a plugin must not undo: a frozen heap and a custom threshold.
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)
    try:
        before = _host_state()
        result = await edit_images(
            name, images, destination=str(tmp_path / "out"), prompt="p", expected_job_seconds=0.2
        )
        after = _host_state()
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
    assert [o.status for o in result.outcomes] == ["complete"] * 3
    assert before["gc_frozen"] > 0 and after["gc_frozen"] > 0  # still frozen: nobody called gc.unfreeze()
    for key in ("gc_enabled", "gc_threshold", "root_level", "root_handlers", "environ", "loop_policy"):
        assert after[key] == before[key], key
