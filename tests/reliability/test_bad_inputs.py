"""Bad inputs are refused before any request, with a message naming the problem: at the client, and
through the flows (a bad item fails fast and alone; the other items of the batch still complete).

Zero requests is proven from both ends: the client's own counters and the simulator's.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from prefect_stablestudio.client import EditRequest, InvalidRequest, StableStudioClient

GOOD = {"prompt": "make it snow", "images": ["https://b.example/x.png"]}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def sim_requests(sim: Any) -> int:
    return sum(sim.state()["counters"]["requests"].values())


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"images": []}, "images"),
        ({"images": [f"https://b.example/{i}.png" for i in range(9)]}, "images"),
        ({"prompt": "x" * 10_001}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"output_quality": 101}, "output_quality"),
        ({"safety_tolerance": 0}, "safety_tolerance"),
    ],
    ids=["0-images", "9-images", "prompt-10001", "prompt-empty", "aspect-7:3", "quality-101", "safety-0"],
)
async def test_bad_edit_parameters_never_reach_the_server(
    make_sim: Any, key: str, override: dict[str, Any], named: str
) -> None:
    sim = make_sim()
    async with StableStudioClient(key, base_url=sim.base_url) as c:
        with pytest.raises(InvalidRequest) as info:
            await c.submit_edit(EditRequest(**{**GOOD, **override}))
        assert c.stats.total_requests == 0 and c.stats.payments_signed == 0
    assert info.value.field == named and named in str(info.value)
    assert sim_requests(sim) == 0
    assert "x" * 100 not in str(info.value)  # the offending value is named, not echoed


@pytest.mark.parametrize("case", ["not-an-image", "too-large", "empty", "missing-file", "unreadable-s3"])
async def test_bad_upload_sources_never_reach_the_server(
    make_sim: Any, key: str, tmp_path: Path, case: str, s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    sim = make_sim()
    expected = {
        "not-an-image": "not a JPEG, PNG, GIF or WebP",
        "too-large": "over the 1024-byte upload limit",
        "empty": "empty",
        "missing-file": "cannot read source",
        "unreadable-s3": "cannot read source",
    }[case]
    source: str
    if case == "not-an-image":
        (tmp_path / "notes.png").write_text("these are not the pixels you are looking for")
        source = str(tmp_path / "notes.png")
    elif case == "too-large":
        (tmp_path / "big.png").write_bytes(png() + b"\0" * 2048)
        source = str(tmp_path / "big.png")
    elif case == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        source = str(tmp_path / "empty.png")
    elif case == "missing-file":
        source = str(tmp_path / "nowhere.png")
    else:
        source = f"s3://{s3_bucket}/no/such/key.png"
    async with StableStudioClient(
        key, base_url=sim.base_url, blob_api_url=sim.blob_api_url, max_upload_bytes=1024
    ) as c:
        with pytest.raises(InvalidRequest, match=expected) as info:
            await c.upload_detailed(source, storage_options=s3_storage_options)
        assert c.stats.total_requests == 0 and c.stats.payments_signed == 0
    assert info.value.field == "source"
    assert sim_requests(sim) == 0


async def test_an_s3_bucket_we_cannot_read_is_named(
    make_sim: Any, key: str, s3_storage_options: dict[str, Any]
) -> None:
    sim = make_sim()
    async with StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url) as c:
        with pytest.raises(InvalidRequest, match="no-such-bucket-") as info:
            await c.upload_detailed("s3://no-such-bucket-7f3a/cat.png", storage_options=s3_storage_options)
        assert c.stats.total_requests == 0
    assert "cannot read source" in str(info.value) and sim_requests(sim) == 0
    assert not os.environ.get("AWS_ENDPOINT_URL", "").startswith("https://")  # moto on loopback only
