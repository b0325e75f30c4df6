"""The generate routes besides the Flux 2 Pro edit: body checks per model, paid route, rendered results.

Each model is described by what is known of its body (the model table in docs/decisions.md): field checks, the
fields that carry uploaded image URLs, and whether it makes an image or a video. Fields the table does not
know pass unchecked, as a lenient stand-in for StableStudio's own schemas.

Example:
    >>> spec = SPECS["nano-banana-pro/generate"]
    >>> _, issues = validate_generate(spec, {"prompt": "a fox", "imageSize": "8K"}, lambda url: None)
    >>> [i["path"] for i in issues]
    [['imageSize']]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from starlette.responses import Response

from prefect_stablestudio.simulator.encoding import b64_json
from prefect_stablestudio.simulator.faults import FaultRule
from prefect_stablestudio.simulator.jobs import Job
from prefect_stablestudio.simulator.media import render_image, render_thumbnail, render_video, size_for
from prefect_stablestudio.simulator.paid import PaidRoute
from prefect_stablestudio.simulator.pricing import TIER_FIELDS, tier_of
from prefect_stablestudio.simulator.render import MEGAPIXELS, output_size
from prefect_stablestudio.simulator.state import SimulatorState
from prefect_stablestudio.simulator.validation import (
    ASPECT_RATIOS,
    EDIT_DEFAULTS,
    GENERATE_SCHEMA,
    MAX_PROMPT_CHARS,
    Issue,
)

__all__ = ["SPECS", "ModelSpec", "generate_route", "serve_generated", "validate_generate"]

Check = Callable[[Any], str | None]


def one_of(*values: Any) -> Check:
    """A check that the value is one of ``values``."""
    return lambda v: None if v in values else f"Expected one of {', '.join(str(x) for x in values)}"


def int_in(low: int, high: int) -> Check:
    """A check that the value is an integer from ``low`` to ``high``."""
    return lambda v: (
        None
        if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
        else f"Expected an integer from {low} to {high}"
    )


def is_bool(value: Any) -> str | None:
    """A check that the value is a boolean."""
    return None if isinstance(value, bool) else "Expected a boolean"


def is_str(value: Any) -> str | None:
    """A check that the value is a string."""
    return None if isinstance(value, str) else "Expected a string"


@dataclass(frozen=True)
class ModelSpec:
    """What the simulator knows of one generate route's body."""

    media: str = "image"
    checks: Mapping[str, Check] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    image_list: str | None = None  # a field holding 1..max_images uploaded URLs (required when set)
    max_images: int = 8
    image_fields: tuple[str, ...] = ()  # fields holding one uploaded URL
    required_images: tuple[str, ...] = ()
    shape_field: str | None = None  # the field giving the output's shape (aspect ratio or size)
    needs: Mapping[str, str] = field(default_factory=dict)  # field -> the field it is only sent with
    unrecognized: tuple[str, ...] = ()  # image fields of other routes, refused as a strict zod object would


_FLUX = {
    "aspect_ratio": one_of(*ASPECT_RATIOS),
    "output_format": one_of("webp", "jpg", "png"),
    "output_quality": int_in(0, 100),
    "safety_tolerance": int_in(1, 5),
    "prompt_upsampling": is_bool,
    "seed": int_in(-(2**63), 2**63 - 1),
}
_FLUX_PRO = {**_FLUX, "resolution": one_of("0.5 MP", "1 MP", "2 MP")}
_FLUX_MAX = {**_FLUX, "resolution": one_of("0.5 MP", "1 MP", "2 MP", "4 MP")}
_NANO_PRO = {"aspectRatio": is_str, "imageSize": one_of("1K", "2K", "4K")}
_NANO = {"aspectRatio": is_str, "imageSize": one_of("512", "1K", "2K", "4K"), "thinkingLevel": is_str}
_GPT = {
    "quality": one_of("low", "medium", "high"),
    "size": one_of("1024x1024", "1536x1024", "1024x1536", "auto"),
}
_SEEDANCE = {"duration": is_str, "aspectRatio": is_str, "outputResolution": one_of("480p", "720p", "1080p")}
_WAN = {"duration": one_of(5, 10, 15)}

SPECS: dict[str, ModelSpec] = {
    "flux-2-pro/generate": ModelSpec(checks=_FLUX_PRO, defaults=EDIT_DEFAULTS, shape_field="aspect_ratio"),
    "flux-2-max/generate": ModelSpec(checks=_FLUX_MAX, defaults=EDIT_DEFAULTS, shape_field="aspect_ratio"),
    "flux-2-max/edit": ModelSpec(
        checks=_FLUX_MAX, defaults=EDIT_DEFAULTS, image_list="images", shape_field="aspect_ratio"
    ),
    "nano-banana-pro/generate": ModelSpec(checks=_NANO_PRO, shape_field="aspectRatio"),
    "nano-banana-pro/edit": ModelSpec(
        checks=_NANO_PRO, image_list="images", max_images=14, shape_field="aspectRatio"
    ),
    "nano-banana/generate": ModelSpec(checks=_NANO, shape_field="aspectRatio"),
    "nano-banana/edit": ModelSpec(
        checks=_NANO, image_list="images", max_images=14, shape_field="aspectRatio"
    ),
    "gpt-image-2/generate": ModelSpec(checks=_GPT, shape_field="size"),
    "gpt-image-2/edit": ModelSpec(checks=_GPT, image_list="images", max_images=16, shape_field="size"),
    "gpt-image-1.5/generate": ModelSpec(checks=_GPT, shape_field="size"),
    "gpt-image-1.5/edit": ModelSpec(checks=_GPT, image_list="images", max_images=16, shape_field="size"),
    "grok/generate": ModelSpec(checks={"aspect_ratio": is_str}, shape_field="aspect_ratio"),
    "grok/edit": ModelSpec(checks={"aspect_ratio": is_str}, image_list="images", shape_field="aspect_ratio"),
    # The first frame in `image`, the last in `lastFrame` (only with `image`): the research note's reading.
    # Whether StableStudio's schema strips or refuses `images[]` / `urls[]` is not known; refusing them here
    # makes a client that sent them (and would pay for a video without its image) fail loudly in tests.
    "veo-3.1/generate": ModelSpec(
        media="video",
        checks={"durationSeconds": one_of("4", "6", "8"), "aspectRatio": one_of("16:9", "9:16")},
        image_fields=("image", "lastFrame"),
        shape_field="aspectRatio",
        needs={"lastFrame": "image"},
        unrecognized=("images", "urls"),
    ),
    "seedance/t2v": ModelSpec(media="video", checks=_SEEDANCE, shape_field="aspectRatio"),
    "seedance/i2v": ModelSpec(
        media="video", checks=_SEEDANCE, image_list="urls", max_images=9, shape_field="aspectRatio"
    ),
    "wan-2.6/t2v": ModelSpec(media="video", checks={**_WAN, "size": is_str}, shape_field="size"),
    "wan-2.6/i2v": ModelSpec(
        media="video",
        checks={**_WAN, "resolution": is_str},
        image_fields=("image",),
        required_images=("image",),
    ),
    "sora-2/generate": ModelSpec(media="video", shape_field="size"),
}


def validate_generate(
    spec: ModelSpec, body: Any, blob_pathname: Callable[[str], str | None]
) -> tuple[dict[str, Any], list[Issue]]:
    """Check a generate body against ``spec``; return it with defaults filled in, and the issues found."""
    if not isinstance(body, dict):
        return {}, [{"path": [], "message": "Expected a JSON object"}]
    full = {**spec.defaults, **body}
    issues: list[Issue] = []
    prompt = full.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= MAX_PROMPT_CHARS:
        issues.append(
            {"path": ["prompt"], "message": f"Expected a string of 1 to {MAX_PROMPT_CHARS} characters"}
        )
    for name, check in spec.checks.items():
        if full.get(name) is not None and (message := check(full[name])) is not None:
            issues.append({"path": [name], "message": message})
    uploaded = "Expected the URL of an image uploaded with /api/upload"
    if spec.image_list is not None:
        urls = full.get(spec.image_list)
        if not isinstance(urls, list) or not 1 <= len(urls) <= spec.max_images:
            issues.append({"path": [spec.image_list], "message": f"Expected 1 to {spec.max_images} URLs"})
        else:
            for i, url in enumerate(urls):
                if not isinstance(url, str) or blob_pathname(url) is None:
                    issues.append({"path": [spec.image_list, i], "message": uploaded})
    for name in spec.image_fields:
        url = full.get(name)
        if url is None and name not in spec.required_images:
            continue
        if not isinstance(url, str):
            issues.append({"code": "invalid_type", "path": [name], "message": "Expected string"})
        elif blob_pathname(url) is None:
            issues.append({"path": [name], "message": uploaded})
    for name, other in spec.needs.items():
        if full.get(name) is not None and full.get(other) is None:
            issues.append({"path": [name], "message": f"{name} requires {other}"})
    stray = [name for name in spec.unrecognized if name in full]
    if stray:
        keys = ", ".join(f"'{name}'" for name in stray)
        issues.append(
            {"code": "unrecognized_keys", "path": [], "message": f"Unrecognized key(s) in object: {keys}"}
        )
    return full, issues


def _first_image(spec: ModelSpec, full: dict[str, Any]) -> str | None:
    if spec.image_list is not None and full.get(spec.image_list):
        return str(full[spec.image_list][0])
    for name in spec.image_fields:
        if isinstance(full.get(name), str):
            return str(full[name])
    return None


def _render_format(full: dict[str, Any]) -> str:
    fmt = str(full.get("output_format") or "png").lower()
    return {"jpeg": "jpg"}.get(fmt, fmt) if fmt in ("webp", "jpg", "jpeg", "png") else "png"


def generate_route(state: SimulatorState, model: str, operation: str, spec: ModelSpec) -> PaidRoute:
    """The paid route ``POST /api/generate/{model}/{operation}`` for a model of ``SPECS``."""
    key = f"{model}/{operation}"
    job_type = f"{model}-{operation}"

    def create(
        full: dict[str, Any], body: Any, payer: str, fault: FaultRule | None
    ) -> tuple[str, dict[str, Any]]:
        first = _first_image(spec, full)
        params = {**full, "output_format": _render_format(full)}
        job = state.jobs.create_job(
            job_type,
            payer,
            body,
            params,
            reference_pathname=(state.blob_pathname(first) or "") if first else "",
            fails=fault is not None and fault.kind == "job_failure",
            media=spec.media,
            latency_seconds=state.settings.latency(key, spec.media),
        )
        return job.job_id, {
            "type": job_type,
            "jobId": job.job_id,
            "status": "pending",
            "success": True,
            "pollUrl": f"{state.origin}/api/jobs/{job.job_id}",
        }

    return PaidRoute(
        name=key,
        counter=f"POST /api/generate/{key}",
        description=f"{model} - {operation}",
        validate=lambda body: validate_generate(spec, body, state.blob_pathname),
        tier=lambda full: tier_of(key, full, state.settings.prices[key]),
        price_key=key,
        create=create,
        input_schema=GENERATE_SCHEMA,
        priced_by_body=TIER_FIELDS.get(key) is not None,
    )


async def serve_generated(state: SimulatorState, job: Job, pathname: str) -> Response:
    """The result (or a video's thumbnail) of a generate job, rendered once and cached."""
    spec = _spec_of(job)
    reference = state.blobs.get(job.reference_pathname) if job.reference_pathname else None
    params = job.params
    shape = params.get(spec.shape_field) if spec.shape_field else None
    resolution = params.get("resolution")
    if isinstance(resolution, str) and resolution in MEGAPIXELS and isinstance(shape, str):
        size = output_size(shape, resolution) if shape in ASPECT_RATIOS else size_for(shape)
    else:
        size = size_for(shape if isinstance(shape, str) else None)
    data = reference.data if reference is not None else None
    prompt = str(params.get("prompt", ""))

    def render() -> tuple[bytes, str]:
        if pathname == job.thumbnail_pathname:
            return render_thumbnail(data, prompt=prompt, size=size)
        if job.media == "video":
            return render_video(data, prompt=prompt, size=size)
        quality = params.get("output_quality", 80)
        return render_image(
            data,
            prompt=prompt,
            size=size,
            output_format=str(params["output_format"]),
            quality=quality if isinstance(quality, int) else 80,
        )

    content, content_type = await anyio.to_thread.run_sync(
        state.renders.get_or_render, b64_json([job.job_id, pathname]), render
    )
    return Response(content, 200, media_type=content_type)


def _spec_of(job: Job) -> ModelSpec:
    for key, spec in SPECS.items():
        if job.type == key.replace("/", "-"):
            return spec
    return ModelSpec(media=job.media)
