"""The typed generate requests: each model's wire field names, what is checked, what passes through."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_stablestudio.client import CATALOG, EditRequest, InvalidRequest, build_request, catalog_entry
from prefect_stablestudio.client.catalog import GenerationRequest

URL = "https://blob.example/uploads/a.png"

# (model, operation, params in Python spelling, the wire body expected)
BODIES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "flux-2-pro", "generate", {"prompt": "p", "aspect_ratio": "16:9", "seed": 7},
        {"prompt": "p", "aspect_ratio": "16:9", "resolution": "1 MP", "output_format": "webp",
         "output_quality": 80, "safety_tolerance": 2, "prompt_upsampling": False, "seed": 7},
    ),
    (
        "flux-2-max", "edit", {"prompt": "p", "images": [URL], "resolution": "4 MP"},
        {"prompt": "p", "aspect_ratio": "1:1", "resolution": "4 MP", "output_format": "webp",
         "output_quality": 80, "safety_tolerance": 2, "prompt_upsampling": False, "images": [URL]},
    ),
    ("nano-banana-pro", "generate", {"prompt": "p", "aspect_ratio": "4:3", "image_size": "2K"},
     {"prompt": "p", "aspectRatio": "4:3", "imageSize": "2K"}),
    ("nano-banana-pro", "edit", {"prompt": "p", "images": [URL] * 14},
     {"prompt": "p", "images": [URL] * 14}),
    ("nano-banana", "generate", {"prompt": "p", "image_size": "512", "thinking_level": "high"},
     {"prompt": "p", "imageSize": "512", "thinkingLevel": "high"}),
    ("gpt-image-2", "generate",
     {"prompt": "p", "quality": "low", "size": "1536x1024", "output_format": "png"},
     {"prompt": "p", "quality": "low", "size": "1536x1024", "output_format": "png"}),
    ("gpt-image-1.5", "edit", {"prompt": "p", "images": [URL], "quality": "high"},
     {"prompt": "p", "quality": "high", "images": [URL]}),
    ("grok", "generate", {"prompt": "p", "aspect_ratio": "19.5:9"},
     {"prompt": "p", "aspect_ratio": "19.5:9"}),
    ("veo-3.1", "generate",
     {"prompt": "p", "duration_seconds": "6", "aspect_ratio": "9:16", "image": URL, "last_frame": URL},
     {"prompt": "p", "durationSeconds": "6", "aspectRatio": "9:16", "image": URL, "lastFrame": URL}),
    ("seedance", "t2v", {"prompt": "p", "duration": "5", "output_resolution": "480p"},
     {"prompt": "p", "duration": "5", "outputResolution": "480p"}),
    ("seedance", "i2v", {"prompt": "p", "urls": [URL], "url_media_types": ["image"], "mode": "first"},
     {"prompt": "p", "urls": [URL], "urlMediaTypes": ["image"], "mode": "first"}),
    ("wan-2.6", "t2v", {"prompt": "p", "duration": 10, "size": "1280*720"},
     {"prompt": "p", "duration": 10, "size": "1280*720"}),
    ("wan-2.6", "i2v", {"prompt": "p", "image": URL, "resolution": "720p"},
     {"prompt": "p", "image": URL, "resolution": "720p"}),
    ("sora-2", "generate", {"prompt": "p", "seconds": 8, "size": "1280x720"},
     {"prompt": "p", "seconds": 8, "size": "1280x720"}),
]


@pytest.mark.parametrize(("model", "operation", "params", "wire"), BODIES)
def test_each_model_sends_its_own_field_names(
    model: str, operation: str, params: dict[str, Any], wire: dict[str, Any]
) -> None:
    assert build_request(model, operation, params).body() == wire


def test_wire_names_are_accepted_as_input_too() -> None:
    req = build_request("veo-3.1", "generate", {"prompt": "p", "durationSeconds": "4", "aspectRatio": "16:9"})
    assert req.body() == {"prompt": "p", "durationSeconds": "4", "aspectRatio": "16:9"}


def test_unknown_fields_pass_through_for_the_server_to_judge() -> None:
    body = build_request("seedance", "t2v", {"prompt": "p", "cameraFixed": True, "fps": 24}).body()
    assert body == {"prompt": "p", "cameraFixed": True, "fps": 24}


# (model, operation, params, the field named in the error)
INVALID: list[tuple[str, str, dict[str, Any], str]] = [
    ("flux-2-pro", "generate", {"prompt": "p", "resolution": "4 MP"}, "resolution"),
    ("flux-2-pro", "generate", {"prompt": "p", "output_quality": 101}, "output_quality"),
    ("flux-2-max", "edit", {"prompt": "p", "images": []}, "images"),
    ("flux-2-max", "edit", {"prompt": "p", "images": [URL] * 9}, "images"),
    ("nano-banana-pro", "generate", {"prompt": "p", "imageSize": "512"}, "imageSize"),
    ("nano-banana-pro", "edit", {"prompt": "p", "images": [URL] * 15}, "images"),
    ("nano-banana", "generate", {"prompt": "p", "image_size": "8K"}, "imageSize"),
    ("gpt-image-2", "generate", {"prompt": "p", "quality": "ultra"}, "quality"),
    ("gpt-image-1.5", "generate", {"prompt": "p", "size": "999x999"}, "size"),
    ("grok", "edit", {"prompt": "p"}, "images"),
    ("veo-3.1", "generate", {"prompt": "p", "duration_seconds": "5"}, "durationSeconds"),
    # Veo's input image is `image` (the first frame); `lastFrame` only with it; never another route's field.
    ("veo-3.1", "generate", {"prompt": "p", "lastFrame": URL}, "lastFrame"),
    ("veo-3.1", "generate", {"prompt": "p", "last_frame": URL}, "lastFrame"),
    ("veo-3.1", "generate", {"prompt": "p", "images": [URL]}, "images"),
    ("veo-3.1", "generate", {"prompt": "p", "urls": [URL]}, "urls"),
    ("veo-3.1", "generate", {"prompt": "p", "image": [URL]}, "image"),
    ("grok", "generate", {"prompt": "p", "images": [URL]}, "images"),
    ("wan-2.6", "i2v", {"prompt": "p", "image": URL, "images": [URL]}, "images"),
    ("seedance", "i2v", {"prompt": "p", "urls": [URL], "image": URL}, "image"),
    ("seedance", "t2v", {"prompt": "p", "outputResolution": "4k"}, "outputResolution"),
    ("seedance", "i2v", {"prompt": "p"}, "urls"),
    ("wan-2.6", "t2v", {"prompt": "p", "duration": 7}, "duration"),
    ("wan-2.6", "i2v", {"prompt": "p"}, "image"),
    ("sora-2", "generate", {"prompt": ""}, "prompt"),
]


@pytest.mark.parametrize(("model", "operation", "params", "field"), INVALID)
def test_known_fields_are_checked_before_any_request(
    model: str, operation: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_request(model, operation, params)
    assert caught.value.field is not None and caught.value.field.split(".")[0] == field
    assert isinstance(caught.value, ValueError)


def test_the_registry_covers_every_model_of_the_issue() -> None:
    wanted = {
        ("flux-2-pro", "generate"), ("flux-2-pro", "edit"),
        ("flux-2-max", "generate"), ("flux-2-max", "edit"),
        ("nano-banana-pro", "generate"), ("nano-banana", "generate"), ("gpt-image-2", "generate"),
        ("gpt-image-1.5", "generate"), ("grok", "generate"), ("veo-3.1", "generate"), ("seedance", "t2v"),
        ("seedance", "i2v"), ("wan-2.6", "t2v"), ("wan-2.6", "i2v"), ("sora-2", "generate"),
    }
    assert wanted <= set(CATALOG)
    for (model, operation), entry in CATALOG.items():
        assert (entry.model, entry.operation) == (model, operation)
        assert entry.expected_seconds < entry.max_wait_seconds
        if entry.request_type is not EditRequest:
            assert issubclass(entry.request_type, GenerationRequest)
            assert (entry.request_type.MODEL, entry.request_type.OPERATION) == (model, operation)
            assert entry.request_type.MEDIA == entry.media
    videos = {key for key, entry in CATALOG.items() if entry.media == "video"}
    assert videos == {("veo-3.1", "generate"), ("seedance", "t2v"), ("seedance", "i2v"), ("wan-2.6", "t2v"),
                      ("wan-2.6", "i2v"), ("sora-2", "generate")}
    # Videos take minutes: their deadlines are longer than any image's.
    assert min(CATALOG[k].max_wait_seconds for k in videos) > max(
        e.max_wait_seconds for k, e in CATALOG.items() if k not in videos
    )


def test_flux_2_pro_edit_goes_through_the_registry_as_edit_request() -> None:
    req = build_request("flux-2-pro", "edit", {"prompt": "p", "images": [URL]})
    assert isinstance(req, EditRequest) and req.body()["images"] == [URL]


def test_unknown_route_names_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match="nano-banana-pro/generate"):
        catalog_entry("midjourney", "generate")


def test_input_images_land_in_each_routes_own_field() -> None:
    veo = catalog_entry("veo-3.1", "generate")
    first, last = URL, URL.replace("a.png", "z.png")
    assert veo.with_images({"prompt": "p"}, [first]) == {"prompt": "p", "image": first}
    both = {"prompt": "p", "image": first, "lastFrame": last}
    assert veo.with_images({"prompt": "p"}, [first, last]) == both
    assert veo.build(veo.with_images({"prompt": "p"}, [first, last])).body() == {
        "prompt": "p", "image": first, "lastFrame": last
    }
    with pytest.raises(InvalidRequest, match="first and last frame"):
        veo.with_images({"prompt": "p"}, [first, last, URL])
    seedance = catalog_entry("seedance", "i2v")
    assert seedance.with_images({"prompt": "p"}, [first, last])["urls"] == [first, last]
    assert catalog_entry("grok", "edit").with_images({"prompt": "p"}, [first])["images"] == [first]
    with pytest.raises(InvalidRequest, match="one"):
        catalog_entry("wan-2.6", "i2v").with_images({"prompt": "p"}, [first, last])
