"""The simulator's other generate routes: per-model checks (400 before a quote), per-model quotes, videos."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from eth_account import Account
from PIL import Image

from prefect_stablestudio.simulator import Simulator
from prefect_stablestudio.simulator.generate import SPECS
from prefect_stablestudio.simulator.pricing import generate_prices
from prefect_stablestudio.simulator.settings import SimulatorSettings
from tests.simulator.helpers import decode_header, paid_post, siwx_request, upload_image


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


def quoted_amount(response: httpx.Response) -> int:
    assert response.status_code == 402, response.text
    return int(decode_header(response.headers["payment-required"])["accepts"][0]["amount"])


# (route, body, expected atomic price): each route prices by its own tier field, or its default.
QUOTES: list[tuple[str, dict[str, Any], int]] = [
    ("flux-2-pro/generate", {"prompt": "p", "resolution": "2 MP"}, 40_000),
    ("flux-2-max/generate", {"prompt": "p", "resolution": "4 MP"}, 170_000),
    ("nano-banana-pro/generate", {"prompt": "p", "imageSize": "4K"}, 240_000),
    ("nano-banana/generate", {"prompt": "p"}, 67_000),
    ("gpt-image-2/generate", {"prompt": "p", "quality": "low"}, 10_000),
    ("gpt-image-1.5/generate", {"prompt": "p", "quality": "high"}, 200_000),
    ("grok/generate", {"prompt": "p", "aspect_ratio": "20:9"}, 70_000),
    ("veo-3.1/generate", {"prompt": "p", "durationSeconds": "4"}, 1_600_000),
    ("seedance/t2v", {"prompt": "p", "outputResolution": "1080p"}, 990_000),
    ("wan-2.6/t2v", {"prompt": "p", "duration": 15}, 1_500_000),
    ("sora-2/generate", {"prompt": "p", "seconds": "8"}, 800_000),
]


@pytest.mark.parametrize(("route", "body", "price"), QUOTES)
async def test_each_route_quotes_its_own_price(
    http: httpx.AsyncClient, route: str, body: dict[str, Any], price: int
) -> None:
    assert quoted_amount(await http.post(f"/api/generate/{route}", json=body)) == price


# (route, body, the issue path expected)
INVALID: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("flux-2-pro/generate", {"prompt": "p", "resolution": "4 MP"}, ["resolution"]),
    ("flux-2-max/edit", {"prompt": "p", "images": ["https://elsewhere.example/a.png"]}, ["images", 0]),
    ("nano-banana-pro/generate", {"prompt": "p", "imageSize": "512"}, ["imageSize"]),
    ("gpt-image-2/generate", {"prompt": "p", "size": "100x100"}, ["size"]),
    ("veo-3.1/generate", {"prompt": "p", "durationSeconds": 8}, ["durationSeconds"]),
    ("seedance/i2v", {"prompt": "p"}, ["urls"]),
    ("wan-2.6/i2v", {"prompt": "p", "duration": 5}, ["image"]),
    ("sora-2/generate", {"prompt": ""}, ["prompt"]),
]


@pytest.mark.parametrize(("route", "body", "path"), INVALID)
async def test_known_fields_are_checked_before_any_quote(
    http: httpx.AsyncClient, route: str, body: dict[str, Any], path: list[Any]
) -> None:
    response = await http.post(f"/api/generate/{route}", json=body)
    assert response.status_code == 400
    assert [issue["path"] for issue in response.json()["issues"]] == [path]


async def test_unknown_fields_and_values_pass_through(http: httpx.AsyncClient) -> None:
    body = {"prompt": "p", "aspectRatio": "21:9", "cameraFixed": True}
    assert quoted_amount(await http.post("/api/generate/seedance/t2v", json=body)) == 660_000


async def test_unknown_routes_are_404(http: httpx.AsyncClient) -> None:
    for route in ("midjourney/generate", "veo-3.1/edit", "flux-2-pro/vectorize"):
        assert (await http.post(f"/api/generate/{route}", json={"prompt": "p"})).status_code == 404


def test_every_served_route_has_a_price_and_a_spec() -> None:
    assert set(generate_prices()) == set(SPECS)
    assert all("default" in tiers for tiers in generate_prices().values())


def test_latency_per_media_and_per_route() -> None:
    settings = SimulatorSettings(
        latency_seconds=1, video_latency_seconds=30, latencies={"sora-2/generate": 90}
    )
    assert settings.latency("grok/generate", "image") == 1
    assert settings.latency("seedance/t2v", "video") == 30
    assert settings.latency("sora-2/generate", "video") == 90


async def poll_until_done(http: httpx.AsyncClient, account: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = (await siwx_request(http, account, "GET", f"/api/jobs/{job_id}")).json()
        if view["status"] in ("complete", "failed"):
            return dict(view)
    raise AssertionError("job did not finish")


async def test_video_job_has_a_gif_and_a_png_thumbnail(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim(video_latency_seconds=0.3)
    account = Account.create()
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as http:
        blob_url = await upload_image(http, account, sim.blob_api_url)
        body = {"prompt": "waves", "urls": [blob_url], "outputResolution": "480p", "aspectRatio": "16:9"}
        paid, _ = await paid_post(http, account, "/api/generate/seedance/i2v", body)
        assert paid.status_code == 200 and paid.json()["type"] == "seedance-i2v"
        view = await poll_until_done(http, account, paid.json()["jobId"])
        assert view["status"] == "complete" and view["input"] == body
        assert set(view["result"]) == {"videoUrl", "thumbnailUrl"}
        video = await http.get(view["result"]["videoUrl"])
        thumb = await http.get(view["result"]["thumbnailUrl"])
        assert video.headers["content-type"] == "image/gif"
        assert Image.open(io.BytesIO(video.content)).n_frames > 1
        assert Image.open(io.BytesIO(thumb.content)).format == "PNG"
    payments = [(p["route"], p["amount"]) for p in sim.state()["ledger"]["payments"]]
    assert payments == [("upload", 10_000), ("seedance/i2v", 330_000)]


async def test_veo_takes_its_input_image_in_image_and_a_last_frame_only_with_it(
    http: httpx.AsyncClient, sim: Simulator
) -> None:
    blob_url = await upload_image(http, Account.create(), sim.blob_api_url)
    # (body, the zod issues expected: code and path)
    wrong: list[tuple[dict[str, Any], list[tuple[str, list[Any]]]]] = [
        ({"prompt": "p", "lastFrame": blob_url}, [("custom", ["lastFrame"])]),
        ({"prompt": "p", "images": [blob_url]}, [("unrecognized_keys", [])]),
        ({"prompt": "p", "urls": [blob_url]}, [("unrecognized_keys", [])]),
        ({"prompt": "p", "image": [blob_url]}, [("invalid_type", ["image"])]),
    ]
    for body, issues in wrong:
        response = await http.post("/api/generate/veo-3.1/generate", json=body)
        assert response.status_code == 400, body
        assert [(i["code"], i["path"]) for i in response.json()["issues"]] == issues
    right = {"prompt": "p", "durationSeconds": "4", "image": blob_url, "lastFrame": blob_url}
    assert quoted_amount(await http.post("/api/generate/veo-3.1/generate", json=right)) == 1_600_000


def test_video_latency_on_the_command_line() -> None:
    from prefect_stablestudio.simulator.cli import build_parser, settings_from_args

    settings = settings_from_args(build_parser().parse_args(["--video-latency", "2.5"]))
    assert settings.video_latency_seconds == 2.5
