"""Request bodies of the paid routes and their JSON schemas (a bad body never costs anything: see paid.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect_stablestudio.simulator.blob import IMAGE_CONTENT_TYPES
from prefect_stablestudio.simulator.render import MEGAPIXELS, PIL_FORMATS

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "2:3", "4:5", "5:4", "4:3", "3:4")
MAX_PROMPT_CHARS = 10_000
MAX_IMAGES = 8
# Defaults of the fields a minimal body may leave out (those of the model's public schema).
EDIT_DEFAULTS: dict[str, Any] = {
    "aspect_ratio": "1:1",
    "resolution": "1 MP",
    "output_format": "webp",
    "output_quality": 80,
    "safety_tolerance": 2,
    "prompt_upsampling": False,
}

Issue = dict[str, Any]


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def validate_edit(
    body: Any, blob_pathname: Callable[[str], str | None]
) -> tuple[dict[str, Any], list[Issue]]:
    """Check a flux-2-pro edit body; return it with defaults filled in, and the issues found.

    ``blob_pathname`` maps an image URL to the pathname of an uploaded blob of this server, or None.

    Example:
        >>> body, issues = validate_edit({"prompt": "", "images": []}, lambda url: None)
        >>> sorted(tuple(i["path"]) for i in issues)
        [('images',), ('prompt',)]
    """
    if not isinstance(body, dict):
        return {}, [{"path": [], "message": "Expected a JSON object"}]
    full = {**EDIT_DEFAULTS, **body}
    issues: list[Issue] = []
    prompt = full.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= MAX_PROMPT_CHARS:
        issues.append(
            {"path": ["prompt"], "message": f"Expected a string of 1 to {MAX_PROMPT_CHARS} characters"}
        )
    if full["aspect_ratio"] not in ASPECT_RATIOS:
        issues.append({"path": ["aspect_ratio"], "message": f"Expected one of {', '.join(ASPECT_RATIOS)}"})
    if full["resolution"] not in MEGAPIXELS:
        issues.append({"path": ["resolution"], "message": f"Expected one of {', '.join(MEGAPIXELS)}"})
    if full["output_format"] not in PIL_FORMATS:
        issues.append({"path": ["output_format"], "message": f"Expected one of {', '.join(PIL_FORMATS)}"})
    if not _int_in(full["output_quality"], 0, 100):
        issues.append({"path": ["output_quality"], "message": "Expected an integer from 0 to 100"})
    if not _int_in(full["safety_tolerance"], 1, 5):
        issues.append({"path": ["safety_tolerance"], "message": "Expected an integer from 1 to 5"})
    if not isinstance(full["prompt_upsampling"], bool):
        issues.append({"path": ["prompt_upsampling"], "message": "Expected a boolean"})
    if "seed" in full and full["seed"] is not None and not _int_in(full["seed"], -(2**63), 2**63 - 1):
        issues.append({"path": ["seed"], "message": "Expected an integer"})
    images = full.get("images")
    if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
        issues.append({"path": ["images"], "message": f"Expected 1 to {MAX_IMAGES} image URLs"})
    else:
        for i, url in enumerate(images):
            if not isinstance(url, str) or blob_pathname(url) is None:
                issues.append(
                    {
                        "path": ["images", i],
                        "message": "Expected the URL of an image uploaded with /api/upload",
                    }
                )
    return full, issues


def validate_upload(body: Any, max_bytes: int) -> list[Issue]:
    """Check a ``POST /api/upload`` body.

    Example:
        >>> validate_upload({"filename": "a.png", "contentType": "image/png"}, 10)
        []
    """
    if not isinstance(body, dict):
        return [{"path": [], "message": "Expected a JSON object"}]
    issues: list[Issue] = []
    filename = body.get("filename")
    if not isinstance(filename, str) or not 1 <= len(filename) <= 255 or "/" in filename or "\\" in filename:
        issues.append(
            {"path": ["filename"], "message": "Expected a file name of 1 to 255 characters, no slashes"}
        )
    if body.get("contentType") not in IMAGE_CONTENT_TYPES:
        issues.append(
            {"path": ["contentType"], "message": f"Expected one of {', '.join(IMAGE_CONTENT_TYPES)}"}
        )
    size = body.get("size")
    if size is not None and not _int_in(size, 1, max_bytes):
        issues.append({"path": ["size"], "message": f"Expected an integer from 1 to {max_bytes}"})
    return issues


# The JSON schemas of the bodies checked above, as a quote's bazaar extension and /openapi.json publish them.
EDIT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
        "images": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_IMAGES,
            "items": {"type": "string", "format": "uri"},
        },
        "aspect_ratio": {"type": "string", "enum": list(ASPECT_RATIOS), "default": "1:1"},
        "resolution": {"type": "string", "enum": list(MEGAPIXELS), "default": "1 MP"},
        "output_format": {"type": "string", "enum": list(PIL_FORMATS), "default": "webp"},
        "output_quality": {"type": "integer", "minimum": 0, "maximum": 100, "default": 80},
        "safety_tolerance": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
        "prompt_upsampling": {"type": "boolean", "default": False},
        "seed": {"type": "integer"},
    },
    "required": ["prompt", "images"],
    "additionalProperties": False,
}
UPLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "filename": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^/\\\\]+$"},
        "contentType": {"type": "string", "enum": list(IMAGE_CONTENT_TYPES)},
        "size": {"type": "integer", "exclusiveMinimum": 0},
    },
    "required": ["filename", "contentType"],
    "additionalProperties": False,
}
# The other generate routes are checked leniently (generate.py); their schema says as much.
GENERATE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 1}},
    "required": ["prompt"],
}
