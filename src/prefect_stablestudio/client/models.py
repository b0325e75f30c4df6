"""Typed requests and replies of the StableStudio API. Unknown reply fields are tolerated.

Example:
    >>> from prefect_stablestudio.client.models import EditRequest
    >>> req = EditRequest(prompt="Make the sky pink", images=["https://example.com/a.png"])
    >>> req.body()["resolution"]
    '1 MP'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from prefect_stablestudio.client.errors import InvalidRequest
from prefect_stablestudio.client.payment import Payment, Settlement
from prefect_stablestudio.client.server_values import check_upload_ticket, client_token_expiry

__all__ = [
    "MAX_FLUX_IMAGES",
    "MAX_PROMPT_CHARS",
    "AspectRatio",
    "BlobInfo",
    "EditRequest",
    "FluxImages",
    "ImageUrl",
    "Job",
    "JobResult",
    "JobStatus",
    "OutputFormat",
    "OutputQuality",
    "Prompt",
    "Resolution",
    "SafetyTolerance",
    "SubmittedJob",
    "UploadResult",
    "UploadTicket",
    "check_image_url",
]

AspectRatio = Literal["1:1", "16:9", "9:16", "3:2", "2:3", "4:5", "5:4", "4:3", "3:4"]
Resolution = Literal["0.5 MP", "1 MP", "2 MP"]
OutputFormat = Literal["webp", "jpg", "png"]
JobStatus = Literal["pending", "loading", "complete", "failed"]
MAX_IMAGE_URL_CHARS = 2048


def check_image_url(url: str) -> str:
    """An input image reference as the server's schema wants it: an absolute http(s) URL with a host.

    Checked locally so that a request the server would refuse is never signed (@agentcash/router validates
    the body only after the signed payment arrives).

    Example:
        >>> check_image_url("not-a-url")
        Traceback (most recent call last):
        ...
        ValueError: expected an http(s) URL of an uploaded image, got 'not-a-url'
    """
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(url) > MAX_IMAGE_URL_CHARS
        or any(c.isspace() or ord(c) < 0x20 for c in url)
    ):
        raise ValueError(f"expected an http(s) URL of an uploaded image, got {url[:80]!r}")
    return url


ImageUrl = Annotated[str, AfterValidator(check_image_url)]
"""An image URL field (checked by `check_image_url`)."""

# The Flux 2 Pro option bounds, defined here only: the client's requests (`EditRequest`, catalog.py) and the
# flow forms (flows/models.py) take them from these types.
MAX_PROMPT_CHARS = 10_000
MAX_FLUX_IMAGES = 8
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
"""A prompt: 1 to 10,000 characters."""
FluxImages = Annotated[tuple[ImageUrl, ...], Field(min_length=1, max_length=MAX_FLUX_IMAGES)]
"""The input images of a Flux edit: 1 to 8 image URLs."""
OutputQuality = Annotated[int, Field(ge=0, le=100)]
"""Compression quality for jpg and webp, 0 to 100."""
SafetyTolerance = Annotated[int, Field(ge=1, le=5)]
"""Moderation: 1 is strictest, 5 most permissive."""


def invalid_from(exc: ValidationError, what: str) -> InvalidRequest:
    """An `InvalidRequest` naming the first offending field of a pydantic error (without echoing values)."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or what
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors())
    return InvalidRequest(f"invalid {what}: {problems}", field=field)


class EditRequest(BaseModel):
    """A Flux 2 Pro edit: a prompt and 1-8 image URLs (from `upload`). Every field is sent explicitly.

    Invalid values raise `InvalidRequest` (a ValueError) naming the field, before any request is made.

    Example:
        >>> EditRequest(prompt="Turn it into a watercolour", images=["https://b/x.png"], output_format="png")
        EditRequest(prompt='Turn it into a watercolour', ...)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    MODEL: ClassVar[str] = "flux-2-pro"
    OPERATION: ClassVar[str] = "edit"
    MEDIA: ClassVar[Literal["image", "video"]] = "image"

    prompt: Prompt
    images: FluxImages
    aspect_ratio: AspectRatio = "1:1"
    resolution: Resolution = "1 MP"
    output_format: OutputFormat = "webp"
    output_quality: OutputQuality = Field(default=80, strict=True)
    safety_tolerance: SafetyTolerance = Field(default=2, strict=True)
    prompt_upsampling: bool = False
    seed: int | None = Field(default=None, strict=True)

    def __init__(
        self,
        *,
        prompt: str,
        images: Sequence[str],
        aspect_ratio: AspectRatio = "1:1",
        resolution: Resolution = "1 MP",
        output_format: OutputFormat = "webp",
        output_quality: int = 80,
        safety_tolerance: int = 2,
        prompt_upsampling: bool = False,
        seed: int | None = None,
    ) -> None:
        try:
            super().__init__(
                prompt=prompt,
                images=tuple(images) if isinstance(images, list | tuple) else images,
                aspect_ratio=aspect_ratio,
                resolution=resolution,
                output_format=output_format,
                output_quality=output_quality,
                safety_tolerance=safety_tolerance,
                prompt_upsampling=prompt_upsampling,
                seed=seed,
            )
        except ValidationError as exc:
            raise invalid_from(exc, "edit request") from None

    def __repr_args__(self) -> Any:
        # A 10 000-character prompt makes logs unreadable: show its head.
        for name, value in super().__repr_args__():
            yield (
                name,
                (value[:60] + "...")
                if name == "prompt" and isinstance(value, str) and len(value) > 60
                else value,
            )

    def body(self) -> dict[str, Any]:
        """The JSON body for `POST /api/generate/flux-2-pro/edit` (seed only when set)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["images"] = list(self.images)
        return data


class SubmittedJob(BaseModel):
    """The reply to a paid submit, with the payment that bought it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    type: str | None = None
    status: str = "pending"
    poll_url: str | None = None
    payment: Payment | None = None
    settlement: Settlement | None = Field(
        default=None, description="None when the reply was lost and the job was found again (resumed)."
    )
    resumed: bool = Field(
        default=False, description="True when found after a lost reply, not from the reply."
    )


class JobResultUrls(BaseModel):
    """The `result` object of a complete job."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    image_url: str | None = Field(default=None, alias="imageUrl")
    video_url: str | None = Field(default=None, alias="videoUrl")
    thumbnail_url: str | None = Field(default=None, alias="thumbnailUrl")


class Job(BaseModel):
    """A job record from `GET /api/jobs/{id}`.

    No public sample shows a whole record, so it is read tolerantly: the id as `jobId` or `id`; a `status`
    outside `JobStatus` is kept as sent (the poller treats it as still running); `error` of any JSON shape
    (read it as text with `error_message`).
    """

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    job_id: str = Field(validation_alias=AliasChoices("jobId", "id", "job_id"), serialization_alias="jobId")
    type: str | None = None
    status: str
    progress: float | None = None
    result: JobResultUrls | None = None
    error: Any = None
    input: Any = None
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")

    @property
    def done(self) -> bool:
        """True once the job is complete or failed."""
        return self.status in ("complete", "failed")

    @property
    def known_status(self) -> bool:
        """True when `status` is one of `JobStatus` (others are read as "still running")."""
        return self.status in ("pending", "loading", "complete", "failed")

    @property
    def error_message(self) -> str | None:
        """The server's `error` as text, whatever its JSON shape (a string, `{"message": ...}`, a list)."""
        if self.error is None or self.error == "":
            return None
        if isinstance(self.error, str):
            return self.error
        if isinstance(self.error, dict) and isinstance(self.error.get("message"), str):
            return str(self.error["message"])
        return json.dumps(self.error, default=str)[:1000]

    @property
    def server_seconds(self) -> float | None:
        """The server's own count of seconds from creation to the last update, when it sends both times."""
        if self.created_at is None or self.updated_at is None:
            return None
        return (self.updated_at - self.created_at).total_seconds()


class JobResult(BaseModel):
    """A complete job's output URLs. They expire (about 20 min): download at once."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    job: Job

    @property
    def media_url(self) -> str | None:
        """The result itself: the video URL for a video job, else the image URL."""
        return self.video_url or self.image_url


class UploadTicket(BaseModel):
    """The reply to `POST /api/upload`: a short-lived client token for one blob PUT. Paid for ($0.01): kept
    (flows persist it before the PUT) and reused for the PUT and the confirm until `valid_until`."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    upload_id: str = Field(alias="uploadId")
    client_token: str = Field(alias="clientToken", repr=False)
    pathname: str
    expires_at: datetime | None = Field(
        default=None,
        alias="expiresAt",
        description="When the ticket expires: `expiresAt` when it is an RFC 3339 time, else the client "
        "token's own `validUntil` (see `server_values.check_upload_ticket`), else None (not known).",
    )

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        """Check the ticket's fields (`check_upload_ticket`) and settle its expiry before anything uses it."""
        if not isinstance(data, dict):
            return data
        declared = data.get("expiresAt", data.get("expires_at"))
        expiry = check_upload_ticket(
            data.get("uploadId", data.get("upload_id")),
            data.get("clientToken", data.get("client_token")),
            data.get("pathname"),
            declared.isoformat() if isinstance(declared, datetime) else declared,
        )
        return {**data, "expiresAt": expiry, "expires_at": expiry}

    @property
    def valid_until(self) -> datetime | None:
        """When the blob API stops taking the token: the token's own `validUntil` (docs/architecture.md §1.4),
        never later than `expiresAt`; None when neither can be read (a kept ticket is then tried once)."""
        known = [
            moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            for moment in (client_token_expiry(self.client_token), self.expires_at)
            if moment is not None
        ]
        return min(known) if known else None


class BlobInfo(BaseModel):
    """The blob API's reply to a PUT."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    url: str
    download_url: str | None = Field(default=None, alias="downloadUrl")
    pathname: str | None = None
    content_type: str | None = Field(default=None, alias="contentType")


class UploadResult(BaseModel):
    """A finished three-step upload: the blob URL to pass in `images`, and what it cost."""

    model_config = ConfigDict(frozen=True)

    blob_url: str
    upload_id: str
    pathname: str
    content_type: str
    size: int
    payments: tuple[Payment, ...] = Field(
        description="Usually one ($0.01); two if the first upload token expired before the bytes went up; "
        "none when a ticket paid earlier was reused."
    )
    ticket_reused: bool = Field(
        default=False, description="The PUT and confirm used a ticket paid earlier (a retry or a rerun)."
    )
    rebought_because: Literal["expired", "refused"] | None = Field(
        default=None,
        description="Set when a further ticket was bought because one paid earlier had expired or was "
        "refused by the blob API: that payment is a second fee for the same upload.",
    )
