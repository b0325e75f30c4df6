"""The scheduled pipeline: new images under an S3 prefix are edited once; a rerun reads and pays nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.flows.pipelines import edit_new_images, output_name, plan_new_images
from tests.helpers.ledger import EDIT_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_output_names_mirror_sub_folders() -> None:
    assert output_name("cat.png", "png") == "cat-edited.png"
    assert output_name("2026/05/dog.JPG", "webp") == "2026/05/dog-edited.webp"


async def test_pipeline_edits_new_images_once_and_a_rerun_costs_nothing(
    sim: Any, make_wallet: Any, s3_bucket: str, s3fs_filesystem: Any, s3_storage_options: dict[str, Any]
) -> None:
    name, wallet, _ = await make_wallet(sim)
    for key, colour in [("in/a.png", (200, 0, 0)), ("in/2026/b.png", (0, 200, 0))]:
        s3fs_filesystem.pipe_file(f"{s3_bucket}/{key}", png_bytes(colour))
    s3fs_filesystem.pipe_file(f"{s3_bucket}/in/notes.txt", b"not an image")
    args: dict[str, Any] = dict(
        wallet_block=name, source_prefix=f"s3://{s3_bucket}/in/", destination_prefix=f"s3://{s3_bucket}/out",
        prompt="make it autumn", storage_options=s3_storage_options,
    )

    first = await edit_new_images(**args)
    assert (first.found, first.skipped, first.edited, first.failed) == (2, 0, 2, 0)
    assert sorted(first.outputs) == [f"s3://{s3_bucket}/out/2026/b-edited.png", f"s3://{s3_bucket}/out/a-edited.png"]
    assert s3fs_filesystem.exists(f"{s3_bucket}/out/2026/b-edited.png")
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 2
    ledger_after_first = payments(sim, wallet.address)

    again = await edit_new_images(**args)
    assert (again.found, again.skipped, again.edited) == (2, 2, 0)
    assert payments(sim, wallet.address) == ledger_after_first  # a rerun over a finished prefix is free

    s3fs_filesystem.pipe_file(f"{s3_bucket}/in/c.png", png_bytes((0, 0, 200)))
    third = await edit_new_images(**args)
    assert (third.found, third.skipped, third.edited) == (3, 2, 1)
    assert third.outputs == [f"s3://{s3_bucket}/out/c-edited.png"]
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 3


async def test_pipeline_defers_beyond_max_images_and_ignores_its_own_results(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.png").write_bytes(png_bytes((i * 60, 10, 10)))
    # Results written into the source folder itself must not be picked up as new images.
    args: dict[str, Any] = dict(
        wallet_block=name, source_prefix=str(folder), destination_prefix=str(folder), prompt="p",
        max_images=2,
    )
    first = await edit_new_images(**args)
    assert (first.found, first.edited, first.deferred) == (3, 2, 1)
    second = await edit_new_images(**args)
    assert (second.found, second.skipped, second.edited, second.deferred) == (3, 2, 1, 0)
    todo, found = await plan_new_images(str(folder), str(folder), "png")
    assert (todo, found) == ([], 3)
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 3
