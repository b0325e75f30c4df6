"""Typed requests and replies of the StableStudio API. Unknown reply fields are tolerated.

Example:
    >>> from prefect_stablestudio.client.models import EditRequest
    >>> req = EditRequest(prompt="Make the sky pink", images=["https://example.com/a.png"])
    >>> req.body()["resolution"]
    '1 MP'
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_stablestudio.client.errors import InvalidRequest
from prefect_stablestudio.client.payment import Payment, Settlement

__all__ = [
    "AspectRatio",
    "BlobInfo",
    "EditRequest",
    "Job",
    "JobResult",
    "JobStatus",
    "OutputFormat",
    "Resolution",
    "SubmittedJob",
    "UploadResult",
    "UploadTicket",
]

AspectRatio = Literal["1:1", "16:9", "9:16", "3:2", "2:3", "4:5", "5:4", "4:3", "3:4"]
Resolution = Literal["0.5 MP", "1 MP", "2 MP"]
OutputFormat = Literal["webp", "jpg", "png"]
JobStatus = Literal["pending", "loading", "complete", "failed"]


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

    prompt: str = Field(min_length=1, max_length=10_000)
    images: tuple[str, ...] = Field(min_length=1, max_length=8)
    aspect_ratio: AspectRatio = "1:1"
    resolution: Resolution = "1 MP"
    output_format: OutputFormat = "webp"
    output_quality: int = Field(default=80, ge=0, le=100, strict=True)
    safety_tolerance: int = Field(default=2, ge=1, le=5, strict=True)
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
    """A job record from `GET /api/jobs/{id}`."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    job_id: str = Field(alias="jobId")
    type: str | None = None
    status: JobStatus
    progress: float | None = None
    result: JobResultUrls | None = None
    error: str | None = None
    input: Any = None
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")

    @property
    def done(self) -> bool:
        """True once the job is complete or failed."""
        return self.status in ("complete", "failed")

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
    expires_at: datetime = Field(alias="expiresAt")

    @property
    def valid_until(self) -> datetime:
        """When the blob API stops taking the token: the token's own `validUntil` (docs/architecture.md §1.4)
        when it can be read, and never later than `expiresAt`."""
        expires = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=UTC)
        until = _token_valid_until(self.client_token)
        return min(until, expires) if until is not None else expires


def _token_valid_until(client_token: str) -> datetime | None:
    """`validUntil` of `vercel_blob_client_<store>_<b64("<hmac>.<b64(json)>")>`; None when unreadable."""
    try:
        outer = base64.b64decode(client_token.rsplit("_", 1)[1], validate=True).decode()
        payload = json.loads(base64.b64decode(outer.split(".", 1)[1]))
        millis = payload["validUntil"]
        if isinstance(millis, bool) or not isinstance(millis, int | float):
            return None
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


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
