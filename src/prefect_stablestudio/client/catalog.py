"""Typed requests for every StableStudio generate route, and a registry of them.

Each model names its fields its own way (``aspect_ratio`` on Flux and Grok, ``aspectRatio`` on Nano Banana,
Veo and Seedance): each request class sends exactly the model's wire names and accepts the Python spelling
too. What the research is sure of is checked here (image URLs, enums, ranges, no nulls are sent); anything
else is passed through for the server to judge: a 400 before the quote, or on @agentcash/router after the
signed request and before settlement (no money moves). Prices come from the live 402 quote; `prices.py`
only bounds what is plausible.

Example:
    >>> from prefect_stablestudio.client.catalog import build_request, catalog_entry
    >>> req = build_request("nano-banana-pro", "generate", {"prompt": "a fox", "aspect_ratio": "16:9"})
    >>> req.body()
    {'prompt': 'a fox', 'aspectRatio': '16:9'}
    >>> catalog_entry("veo-3.1", "generate").media
    'video'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from prefect_stablestudio.client.errors import InvalidRequest
from prefect_stablestudio.client.models import (
    AspectRatio,
    EditRequest,
    FluxImages,
    ImageUrl,
    OutputFormat,
    OutputQuality,
    Prompt,
    Resolution,
    SafetyTolerance,
    invalid_from,
)

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "Flux2MaxEdit",
    "Flux2MaxGenerate",
    "Flux2ProGenerate",
    "GenerationBody",
    "GenerationRequest",
    "GptImage2Edit",
    "GptImage2Generate",
    "GptImage15Edit",
    "GptImage15Generate",
    "GrokEdit",
    "GrokGenerate",
    "MediaKind",
    "NanoBananaEdit",
    "NanoBananaGenerate",
    "NanoBananaProEdit",
    "NanoBananaProGenerate",
    "SeedanceI2V",
    "SeedanceT2V",
    "Sora2Generate",
    "Veo31Generate",
    "Wan26I2V",
    "Wan26T2V",
    "build_request",
    "catalog_entry",
]

MediaKind = Literal["image", "video"]
IMAGE_MODE_FIELDS = ("images", "urls", "image", "lastFrame", "last_frame", "image_url", "image_urls")
"""Names that carry input images on one route or another (`images[]`, `urls[]`, `image`, `lastFrame`). A
request may use only its own route's: elsewhere a lenient schema would drop the image silently (a paid
text-to-video instead of image-to-video) and a strict one would refuse the body."""


GenerationBody = Union["GenerationRequest", EditRequest]
"""Any typed generate request: the classes here, and `EditRequest` (Flux 2 Pro edit)."""


class GenerationRequest(BaseModel):
    """Base of the typed generate requests: unknown fields pass through, unset optional fields are not sent.

    Invalid values raise `InvalidRequest` (a ValueError) naming the field, before any request is made.
    Subclasses set `MODEL`, `OPERATION` and `MEDIA`.

    Example:
        >>> GrokGenerate(prompt="a lighthouse", aspect_ratio="20:9").body()
        {'prompt': 'a lighthouse', 'aspect_ratio': '20:9'}
    """

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    MODEL: ClassVar[str]
    OPERATION: ClassVar[str]
    MEDIA: ClassVar[MediaKind] = "image"

    prompt: Prompt

    def __init__(self, **data: Any) -> None:
        # Validate under the wire names, so an error names the field as the API (and its docs) spell it.
        fields = type(self).model_fields
        for name, info in fields.items():
            if info.alias and name in data and info.alias not in data:
                data[info.alias] = data.pop(name)
        own = {info.alias or name for name, info in fields.items()}
        stray = next((k for k in data if k in IMAGE_MODE_FIELDS and k not in own), None)
        if stray is not None:
            takes = [f for f in IMAGE_MODE_FIELDS if f in own]
            where = f"its input images go in {' / '.join(takes)}" if takes else "it takes no input images"
            raise InvalidRequest(
                f"{self.MODEL}/{self.OPERATION} takes no {stray!r} field: {where}", field=stray
            )
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise invalid_from(exc, f"{self.MODEL}/{self.OPERATION} request") from None

    def body(self) -> dict[str, Any]:
        """The JSON body, with the model's own field names (unset optional fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- images ------------------------------------------------------------------------------------------


class Flux2ProGenerate(GenerationRequest):
    """Flux 2 Pro text-to-image (``flux-2-pro/generate``). Every field is sent, as for the edit."""

    MODEL = "flux-2-pro"
    OPERATION = "generate"

    aspect_ratio: AspectRatio = "1:1"
    resolution: Resolution = "1 MP"
    output_format: OutputFormat = "webp"
    output_quality: OutputQuality = Field(default=80, strict=True)
    safety_tolerance: SafetyTolerance = Field(default=2, strict=True)
    prompt_upsampling: bool = False
    seed: int | None = Field(default=None, strict=True)


FluxMaxResolution = Literal["0.5 MP", "1 MP", "2 MP", "4 MP"]


class Flux2MaxGenerate(Flux2ProGenerate):
    """Flux 2 Max text-to-image (``flux-2-max/generate``): Flux 2 Pro's fields, resolution up to 4 MP."""

    MODEL = "flux-2-max"
    resolution: FluxMaxResolution = "1 MP"  # type: ignore[assignment]


class Flux2MaxEdit(Flux2MaxGenerate):
    """Flux 2 Max edit (``flux-2-max/edit``): 1-8 image URLs from `upload`."""

    OPERATION = "edit"
    images: FluxImages


class NanoBananaProGenerate(GenerationRequest):
    """Nano Banana Pro (``nano-banana-pro/generate``): camelCase ``aspectRatio``, ``imageSize`` 1K/2K/4K."""

    MODEL = "nano-banana-pro"
    OPERATION = "generate"

    aspect_ratio: str | None = Field(default=None, alias="aspectRatio")
    image_size: Literal["1K", "2K", "4K"] | None = Field(default=None, alias="imageSize")


class NanoBananaProEdit(NanoBananaProGenerate):
    """Nano Banana Pro edit (``nano-banana-pro/edit``): up to 14 image URLs."""

    OPERATION = "edit"
    images: tuple[ImageUrl, ...] = Field(min_length=1, max_length=14)


class NanoBananaGenerate(GenerationRequest):
    """Nano Banana (``nano-banana/generate``): ``aspectRatio``, ``imageSize`` 512/1K/2K/4K,
    ``thinkingLevel``."""

    MODEL = "nano-banana"
    OPERATION = "generate"

    aspect_ratio: str | None = Field(default=None, alias="aspectRatio")
    image_size: Literal["512", "1K", "2K", "4K"] | None = Field(default=None, alias="imageSize")
    thinking_level: str | None = Field(default=None, alias="thinkingLevel")


class NanoBananaEdit(NanoBananaGenerate):
    """Nano Banana edit (``nano-banana/edit``): image URLs from `upload` (the limit is not documented)."""

    OPERATION = "edit"
    images: tuple[ImageUrl, ...] = Field(min_length=1)


GptQuality = Literal["low", "medium", "high"]
GptSize = Literal["1024x1024", "1536x1024", "1024x1536", "auto"]


class GptImage2Generate(GenerationRequest):
    """GPT Image 2 (``gpt-image-2/generate``), StableStudio's default image model. May take minutes."""

    MODEL = "gpt-image-2"
    OPERATION = "generate"

    quality: GptQuality | None = None
    size: GptSize | None = None
    output_format: str | None = None


class GptImage2Edit(GptImage2Generate):
    """GPT Image 2 edit (``gpt-image-2/edit``)."""

    OPERATION = "edit"
    images: tuple[ImageUrl, ...] = Field(min_length=1)


class GptImage15Generate(GenerationRequest):
    """GPT Image 1.5 (``gpt-image-1.5/generate``): ``quality`` and ``size``."""

    MODEL = "gpt-image-1.5"
    OPERATION = "generate"

    quality: GptQuality | None = None
    size: GptSize | None = None


class GptImage15Edit(GptImage15Generate):
    """GPT Image 1.5 edit (``gpt-image-1.5/edit``)."""

    OPERATION = "edit"
    images: tuple[ImageUrl, ...] = Field(min_length=1)


class GrokGenerate(GenerationRequest):
    """Grok image (``grok/generate``): snake_case ``aspect_ratio`` (13 values, 19.5:9 and 20:9 among them)."""

    MODEL = "grok"
    OPERATION = "generate"

    aspect_ratio: str | None = None


class GrokEdit(GrokGenerate):
    """Grok edit (``grok/edit``)."""

    OPERATION = "edit"
    images: tuple[ImageUrl, ...] = Field(min_length=1)


# -- videos ------------------------------------------------------------------------------------------


class Veo31Generate(GenerationRequest):
    """Veo 3.1 (``veo-3.1/generate``): ``durationSeconds`` "4"/"6"/"8", ``aspectRatio``. An input image is a
    blob URL in ``image`` (the first frame: image-to-video); ``lastFrame`` (the last frame: interpolation)
    only together with ``image``. Never ``images[]`` or ``urls[]``."""

    MODEL = "veo-3.1"
    OPERATION = "generate"
    MEDIA = "video"

    duration_seconds: Literal["4", "6", "8"] | None = Field(default=None, alias="durationSeconds")
    aspect_ratio: str | None = Field(default=None, alias="aspectRatio")
    image: ImageUrl | None = None
    last_frame: ImageUrl | None = Field(default=None, alias="lastFrame")

    @field_validator("last_frame")
    @classmethod
    def _last_frame_needs_image(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("image") is None:
            raise ValueError("lastFrame (the last frame) is sent only together with image (the first frame)")
        return value


class SeedanceT2V(GenerationRequest):
    """Seedance text-to-video (``seedance/t2v``): ``duration`` (a string), ``aspectRatio``,
    ``outputResolution`` 480p/720p/1080p."""

    MODEL = "seedance"
    OPERATION = "t2v"
    MEDIA = "video"

    duration: str | None = None
    aspect_ratio: str | None = Field(default=None, alias="aspectRatio")
    output_resolution: Literal["480p", "720p", "1080p"] | None = Field(default=None, alias="outputResolution")


class SeedanceI2V(SeedanceT2V):
    """Seedance image-to-video (``seedance/i2v``): ``urls`` (blob URLs), ``urlMediaTypes``, ``mode``."""

    OPERATION = "i2v"

    urls: tuple[ImageUrl, ...] = Field(min_length=1)
    url_media_types: tuple[str, ...] | None = Field(default=None, alias="urlMediaTypes")
    mode: str | None = None


class Wan26T2V(GenerationRequest):
    """Wan 2.6 text-to-video (``wan-2.6/t2v``): ``duration`` 5/10/15, ``size`` such as "1280*720"."""

    MODEL = "wan-2.6"
    OPERATION = "t2v"
    MEDIA = "video"

    duration: Literal[5, 10, 15] | None = None
    size: str | None = None


class Wan26I2V(GenerationRequest):
    """Wan 2.6 image-to-video (``wan-2.6/i2v``): ``image`` (a blob URL), ``resolution``, ``duration``."""

    MODEL = "wan-2.6"
    OPERATION = "i2v"
    MEDIA = "video"

    image: ImageUrl = Field(min_length=1)
    duration: Literal[5, 10, 15] | None = None
    resolution: str | None = None


class Sora2Generate(GenerationRequest):
    """Sora 2 (``sora-2/generate``): ``seconds`` and ``size``."""

    MODEL = "sora-2"
    OPERATION = "generate"
    MEDIA = "video"

    seconds: int | str | None = None
    size: str | None = None


# -- registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """One generate route: its request type, what it makes, and how long to wait for it.

    `expected_seconds` is the typical turnaround (where polling starts); `max_wait_seconds` the default
    deadline. Videos take minutes.
    """

    model: str
    operation: str
    request_type: type[GenerationRequest] | type[EditRequest]
    media: MediaKind
    expected_seconds: float
    max_wait_seconds: float
    image_field: str | None = None

    last_frame_field: str | None = None

    def with_images(self, params: Mapping[str, Any], urls: Sequence[str]) -> dict[str, Any]:
        """``params`` with uploaded image URLs in this route's image field (a list, or one URL; for Veo, the
        first frame in ``image`` and an optional second, the last frame, in ``lastFrame``).

        Example:
            >>> catalog_entry("wan-2.6", "i2v").with_images({"prompt": "p"}, ["https://b/x.png"])
            {'prompt': 'p', 'image': 'https://b/x.png'}
            >>> catalog_entry("veo-3.1", "generate").with_images({"prompt": "p"}, ["https://b/a", "https://b/z"])
            {'prompt': 'p', 'image': 'https://b/a', 'lastFrame': 'https://b/z'}
        """
        if not urls:
            return dict(params)
        if self.image_field is None:
            raise InvalidRequest(f"{self.model}/{self.operation} takes no input images", field="images")
        if self.image_field in SINGLE_IMAGE_FIELDS:
            if self.last_frame_field is not None and len(urls) == 2:
                return {**params, self.image_field: urls[0], self.last_frame_field: urls[1]}
            if len(urls) != 1:
                most = "one input image, or two (first and last frame)" if self.last_frame_field else "one"
                raise InvalidRequest(f"{self.model}/{self.operation} takes {most}", field="images")
            return {**params, self.image_field: urls[0]}
        return {**params, self.image_field: list(urls)}

    def build(self, params: Mapping[str, Any]) -> GenerationBody:
        """A validated request from a params dict (raises `InvalidRequest`)."""
        return self.request_type(**dict(params))


SINGLE_IMAGE_FIELDS = ("image",)


def _entry(cls: type[GenerationRequest], expected: float, max_wait: float) -> CatalogEntry:
    fields = cls.model_fields
    image_field = next((f for f in ("images", "urls", "image") if f in fields), None)
    last_frame = fields["last_frame"].alias if "last_frame" in fields else None
    return CatalogEntry(cls.MODEL, cls.OPERATION, cls, cls.MEDIA, expected, max_wait, image_field, last_frame)


CATALOG: Mapping[tuple[str, str], CatalogEntry] = {
    (e.model, e.operation): e
    for e in (
        CatalogEntry("flux-2-pro", "edit", EditRequest, "image", 5.0, 600.0, "images"),
        _entry(Flux2ProGenerate, 5.0, 300.0),
        _entry(Flux2MaxGenerate, 10.0, 300.0),
        _entry(Flux2MaxEdit, 10.0, 300.0),
        _entry(NanoBananaProGenerate, 10.0, 300.0),
        _entry(NanoBananaProEdit, 10.0, 300.0),
        _entry(NanoBananaGenerate, 8.0, 300.0),
        _entry(NanoBananaEdit, 8.0, 300.0),
        _entry(GptImage2Generate, 30.0, 600.0),
        _entry(GptImage2Edit, 30.0, 600.0),
        _entry(GptImage15Generate, 20.0, 600.0),
        _entry(GptImage15Edit, 20.0, 600.0),
        _entry(GrokGenerate, 8.0, 300.0),
        _entry(GrokEdit, 8.0, 300.0),
        _entry(Veo31Generate, 90.0, 900.0),
        _entry(SeedanceT2V, 60.0, 900.0),
        _entry(SeedanceI2V, 60.0, 900.0),
        _entry(Wan26T2V, 90.0, 900.0),
        _entry(Wan26I2V, 90.0, 900.0),
        _entry(Sora2Generate, 120.0, 1200.0),
    )
}


def catalog_entry(model: str, operation: str) -> CatalogEntry:
    """The registry entry of ``model/operation``.

    Raises:
        InvalidRequest: no such route in the catalog (the message lists the known ones).
    """
    entry = CATALOG.get((model, operation))
    if entry is None:
        known = ", ".join(f"{m}/{o}" for m, o in CATALOG)
        raise InvalidRequest(f"unknown model/operation {model}/{operation}; known: {known}", field="model")
    return entry


def build_request(model: str, operation: str, params: Mapping[str, Any]) -> GenerationBody:
    """A validated request for ``model/operation`` from a params dict (Python or wire field names).

    Raises:
        InvalidRequest: unknown route, or a known field out of range (nothing is sent).
    """
    return catalog_entry(model, operation).build(params)
