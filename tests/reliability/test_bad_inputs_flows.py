"""Bad inputs through the Prefect flows: refused before any request, named; the rest of a batch completes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.flows import EditFailed, EditItem, edit_image, edit_images
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


def sim_requests(sim: Any) -> int:
    return sum(sim.state()["counters"]["requests"].values())


async def test_bad_items_fail_alone_and_the_rest_of_the_batch_completes(
    make_sim: Any,
    make_wallet: Any,
    tmp_path: Path,
    s3_bucket: str,
    s3fs_filesystem: Any,
    s3_storage_options: dict[str, Any],
) -> None:
    sim = make_sim(latency_seconds=0.1)
    name, wallet, _ = await make_wallet(sim)
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    good[0].write_bytes(png_bytes((10, 20, 30)))
    good[1].write_bytes(png_bytes((40, 50, 60)))
    s3fs_filesystem.pipe_file(f"{s3_bucket}/c.png", png_bytes((70, 80, 90)))
    (tmp_path / "notes.png").write_text("not pixels")
    items = [
        str(good[0]),
        str(tmp_path / "notes.png"),
        f"s3://{s3_bucket}/missing/cat.png",
        str(tmp_path / "nowhere.png"),
        str(good[1]),
        f"s3://{s3_bucket}/c.png",
    ]
    result = await edit_images(
        name,
        items,
        str(tmp_path / "out"),
        prompt="make it snow",
        storage_options=s3_storage_options,
        intent_store_url=str(tmp_path / "intents"),
        fail_on_error=False,
    )
    by_image = {o.images[0]: o for o in result.outcomes}
    assert [by_image[i].status for i in items] == [
        "complete",
        "failed",
        "failed",
        "failed",
        "complete",
        "complete",
    ]
    assert "not a JPEG, PNG, GIF or WebP" in (by_image[items[1]].error or "")
    assert "missing/cat.png" in (by_image[items[2]].error or "")
    assert "nowhere.png" in (by_image[items[3]].error or "")
    # Only the good items paid: one upload and one edit each.
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 3
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 3
    assert sum(1 for o in result.outcomes if o.cost_usd) == 3


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"prompt": "x" * 10_001}, "prompt"),
        ({"options": {"aspect_ratio": "7:3"}}, "aspect_ratio"),
        ({"options": {"output_quality": 101}}, "output_quality"),
        ({"options": {"safety_tolerance": 0}}, "safety_tolerance"),
        ({"reference_images": [f"/tmp/r{i}.png" for i in range(8)]}, "images"),
    ],
    ids=["prompt-10001", "aspect-7:3", "quality-101", "safety-0", "9-images"],
)
async def test_bad_parameters_fail_the_run_before_any_request(
    make_sim: Any, make_wallet: Any, tmp_path: Path, kwargs: dict[str, Any], named: str
) -> None:
    sim = make_sim()
    name, _, _ = await make_wallet(sim)
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    args: dict[str, Any] = {
        "wallet_block": name,
        "image": str(image),
        "prompt": "make it snow",
        "destination": str(tmp_path / "out"),
        "intent_store_url": str(tmp_path / "intents"),
        **kwargs,
    }
    with pytest.raises(Exception, match=named) as info:
        await edit_image(**args)
    assert "x" * 200 not in str(info.value)
    assert sim_requests(sim) == 0


@pytest.mark.parametrize("images", [[], [f"/tmp/i{i}.png" for i in range(9)]], ids=["0-images", "9-images"])
async def test_an_item_with_0_or_9_images_is_refused_by_the_batch_before_any_request(
    make_sim: Any, make_wallet: Any, tmp_path: Path, images: list[str]
) -> None:
    sim = make_sim()
    name, _, _ = await make_wallet(sim)
    with pytest.raises(Exception, match="images"):
        await edit_images(name, [{"images": images}], str(tmp_path / "out"), prompt="p")
    assert sim_requests(sim) == 0
    with pytest.raises(ValueError, match="images"):
        EditItem(images=images)


async def test_an_input_over_the_upload_limit_is_refused_before_any_request(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim()
    name, _, _ = await make_wallet(sim)
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.write(png_bytes())
        handle.truncate(300 * 2**20)  # sparse: made at once, read only if the flow reads it
    with pytest.raises(EditFailed) as info:
        await edit_image(
            name, str(huge), "make it snow", str(tmp_path / "out"), intent_store_url=str(tmp_path / "intents")
        )
    assert "268435456-byte (256 MiB) upload limit" in str(info.value.outcome.error)
    assert "314572800 bytes" in str(info.value.outcome.error)
    assert info.value.outcome.upload_cost_usd == 0 and info.value.outcome.status == "failed"
    assert sim_requests(sim) == 0
