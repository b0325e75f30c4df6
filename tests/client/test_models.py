"""The typed edit request: every invalid value is refused locally, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_stablestudio.client import EditRequest, InvalidRequest
from prefect_stablestudio.client.models import Job

OK: dict[str, Any] = {"prompt": "make it blue", "images": ["https://b.example/x.png"]}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"images": []}, "images"),
        ({"images": [f"https://b.example/{i}.png" for i in range(9)]}, "images"),
        ({"prompt": "x" * 10_001}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"aspect_ratio": "7:1"}, "aspect_ratio"),
        ({"resolution": "4 MP"}, "resolution"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_quality": 101}, "output_quality"),
        ({"output_quality": -1}, "output_quality"),
        ({"safety_tolerance": 0}, "safety_tolerance"),
        ({"safety_tolerance": 6}, "safety_tolerance"),
    ],
)
def test_invalid_values_name_the_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        EditRequest(**{**OK, **override})
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_limits_themselves_are_accepted() -> None:
    req = EditRequest(
        prompt="x" * 10_000,
        images=[f"https://b.example/{i}.png" for i in range(8)],
        output_quality=0,
        safety_tolerance=5,
        seed=7,
    )
    assert len(req.images) == 8


def test_body_sends_every_field_explicitly() -> None:
    body = EditRequest(**OK).body()
    assert body == {
        "prompt": "make it blue",
        "images": ["https://b.example/x.png"],
        "aspect_ratio": "1:1",
        "resolution": "1 MP",
        "output_format": "webp",
        "output_quality": 80,
        "safety_tolerance": 2,
        "prompt_upsampling": False,
    }
    assert EditRequest(**OK, seed=42).body()["seed"] == 42


def test_job_tolerates_unknown_fields_and_reads_results() -> None:
    job = Job.model_validate(
        {
            "jobId": "j1",
            "type": "flux-2-pro-edit",
            "status": "complete",
            "progress": 100,
            "result": {"imageUrl": "https://blob/x.webp", "newThing": 1},
            "error": None,
            "input": OK,
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:05Z",
            "extra": "ok",
        }
    )
    assert job.done and job.result is not None and job.result.image_url == "https://blob/x.webp"
