"""The `generate` flow with models other than the Flux 2 Pro edit: an image model, a video model."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prefect.utilities.callables import parameter_schema

from prefect_stablestudio.client import InvalidRequest
from prefect_stablestudio.flows.generate import extension_for, generate
from tests.helpers.ledger import UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


async def test_image_model_edit_saves_the_result_and_a_rerun_pays_nothing(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    source = tmp_path / "cat.png"
    source.write_bytes(png_bytes())
    kwargs: dict[str, Any] = dict(
        wallet_block=name, prompt="a cat in a hat", destination=str(tmp_path / "out"),
        model="nano-banana-pro", operation="edit", params={"aspect_ratio": "4:3", "image_size": "2K"},
        images=[str(source)], expected_job_seconds=0.3, intent_store_url=str(tmp_path / "intents"),
    )
    outcome = await generate(**kwargs)
    (paid,) = payments(sim, wallet.address, "nano-banana-pro/edit")
    assert paid["amount"] == 180_000 and outcome.cost_usd == Decimal("0.18")  # the quote's 2K price
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1
    assert outcome.upload_cost_usd == Decimal("0.01")
    assert outcome.media == "image" and outcome.thumbnail_uri is None
    assert outcome.output_uri == str(tmp_path / "out" / f"nano-banana-pro-edit-{outcome.job_id}.png")
    written = Path(outcome.output_uri).read_bytes()
    assert hashlib.sha256(written).hexdigest() == outcome.sha256
    assert Image.open(io.BytesIO(written)).size[0] > Image.open(io.BytesIO(written)).size[1]  # 4:3

    before = sim.state()["counters"]["requests"]
    again = await generate(**kwargs)
    assert again.job_id == outcome.job_id and not again.paid_now
    assert (again.output_uri, again.sha256) == (outcome.output_uri, outcome.sha256)
    # A rerun trusts the record and the intact file: no download (the URL may have expired by then).
    assert sim.state()["counters"]["requests"].get("GET /blobs") == before.get("GET /blobs")
    assert len(payments(sim, wallet.address)) == 2  # still one upload and one generation


async def test_video_model_saves_video_and_thumbnail(make_sim: Any, make_wallet: Any, tmp_path: Path) -> None:
    sim = make_sim(video_latency_seconds=0.4)
    name, wallet, _ = await make_wallet(sim)
    outcome = await generate(
        wallet_block=name, prompt="waves at dusk", destination=str(tmp_path), model="seedance",
        operation="t2v", params={"outputResolution": "480p"}, output_name="waves",
        expected_job_seconds=0.4, intent_store_url=str(tmp_path / "intents"),
    )
    (paid,) = payments(sim, wallet.address)
    assert paid["route"] == "seedance/t2v" and paid["amount"] == 330_000
    assert outcome.media == "video" and outcome.content_type == "image/gif"
    assert outcome.output_uri == str(tmp_path / "waves.gif")
    assert outcome.thumbnail_uri == str(tmp_path / "waves-thumbnail.png")
    assert Image.open(outcome.output_uri).n_frames > 1
    assert Image.open(outcome.thumbnail_uri).format == "PNG"


async def test_invalid_params_fail_before_anything_is_paid(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    source = tmp_path / "cat.png"
    source.write_bytes(png_bytes())
    with pytest.raises(InvalidRequest, match="durationSeconds"):
        await generate(
            wallet_block=name, prompt="p", destination=str(tmp_path), model="veo-3.1",
            params={"duration_seconds": "5"}, images=[str(source)],
        )
    with pytest.raises(InvalidRequest, match="unknown model/operation"):
        await generate(wallet_block=name, prompt="p", destination=str(tmp_path), model="dall-e")
    assert payments(sim, wallet.address) == []


def test_extensions_follow_the_content_type() -> None:
    assert [extension_for(t) for t in ("image/png", "image/jpeg", "video/mp4", "image/gif", "")] == [
        "png", "jpg", "mp4", "gif", "bin",
    ]


def test_the_flow_takes_a_model_choice_as_deployment_parameters() -> None:
    properties = parameter_schema(generate.fn).model_dump()["properties"]
    assert properties["model"]["default"] == "flux-2-pro"
    assert properties["operation"]["default"] == "generate"
    assert {"params", "images", "max_wait_seconds"} <= set(properties)
