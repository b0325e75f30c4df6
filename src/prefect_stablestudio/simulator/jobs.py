"""Jobs and uploads as records; a job's status follows from timestamps, so no job needs a task or thread."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect_stablestudio.simulator.encoding import iso

JobStatus = Literal["pending", "loading", "complete", "failed"]
# Share of a job's latency spent "pending" before it starts "loading".
PENDING_SHARE = 0.15
FORMAT_EXTENSIONS = {"webp": "webp", "jpg": "jpg", "png": "png"}


@dataclass(frozen=True)
class Job:
    """A submitted generation; everything about its life follows from these fields."""

    job_id: str
    type: str
    payer: str
    input: Any
    params: dict[str, Any]
    created_at: float
    done_at: float
    fails: bool
    reference_pathname: str
    media: str = "image"

    def status(self, now: float) -> tuple[JobStatus, int | None]:
        """Status and progress (0..100 while loading) at ``now``.

        Example:
            >>> job = Job("j", "t", "0xa", {}, {}, 0.0, 10.0, fails=False, reference_pathname="p")
            >>> job.status(0.5), job.status(5.0), job.status(10.0)
            (('pending', 0), ('loading', 50), ('complete', 100))
        """
        if now >= self.done_at:
            return ("failed", None) if self.fails else ("complete", 100)
        span = self.done_at - self.created_at
        if now < self.created_at + span * PENDING_SHARE:
            return "pending", 0
        return "loading", min(99, int(100 * (now - self.created_at) / span))

    @property
    def result_pathname(self) -> str:
        """Blob pathname of the result (an animated GIF for a video job)."""
        if self.media == "video":
            return f"generated/{self.job_id}.gif"
        ext = FORMAT_EXTENSIONS.get(str(self.params.get("output_format", "webp")), "webp")
        return f"generated/{self.job_id}.{ext}"

    @property
    def thumbnail_pathname(self) -> str | None:
        """Blob pathname of a video's thumbnail (PNG); None for images."""
        return f"generated/{self.job_id}.thumb.png" if self.media == "video" else None

    def view(self, now: float, base_url: str, *, timestamps: bool = True) -> dict[str, Any]:
        """The JSON of ``GET /api/jobs/{id}`` at ``now``; createdAt/updatedAt only with ``timestamps``."""
        status, progress = self.status(now)
        result: dict[str, str] | None = None
        if status == "complete":
            url = f"{base_url}/blobs/{self.result_pathname}"
            result = (
                {"videoUrl": url, "thumbnailUrl": f"{base_url}/blobs/{self.thumbnail_pathname}"}
                if self.media == "video"
                else {"imageUrl": url}
            )
        updated = min(now, self.done_at) if status in ("complete", "failed") else now
        view: dict[str, Any] = {
            "jobId": self.job_id,
            "type": self.type,
            "status": status,
            "progress": progress,
            "result": result,
            "error": "Generation failed: the model returned an error (simulated)"
            if status == "failed"
            else None,
            "input": self.input,
        }
        if timestamps:
            view.update(createdAt=iso(self.created_at), updatedAt=iso(updated))
        return view


@dataclass
class Upload:
    """A paid upload slot; ``confirmed`` once its owner confirmed the blob."""

    upload_id: str
    payer: str
    pathname: str
    content_type: str
    filename: str
    created_at: float
    confirmed: bool = False
    size: int | None = None


@dataclass
class _Index:
    jobs: dict[str, Job] = field(default_factory=dict)
    by_owner: dict[str, list[str]] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)


class JobBook:
    """All jobs and uploads, indexed by id and by owner (thread-safe).

    Example:
        >>> book = JobBook(latency_seconds=1.0, jitter=0.0, seed=1)
        >>> job = book.create_job("t", "0xAa", {"prompt": "x"}, {}, reference_pathname="p", fails=False)
        >>> book.job_for(job.job_id, "0xaa") is job, book.job_for(job.job_id, "0xbb")
        (True, None)
    """

    def __init__(self, *, latency_seconds: float, jitter: float, seed: int) -> None:
        self._latency = latency_seconds
        self._jitter = jitter
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._index = _Index()

    def create_job(
        self,
        job_type: str,
        payer: str,
        body: Any,
        params: dict[str, Any],
        *,
        reference_pathname: str,
        fails: bool,
        media: str = "image",
        latency_seconds: float | None = None,
    ) -> Job:
        """Record a job of ``payer``: ``body`` as sent, ``params`` with defaults; its end drawn (seeded).

        ``latency_seconds`` overrides the book's latency (videos take longer than images).
        """
        now = time.time()
        with self._lock:
            spread = 1.0 + self._jitter * (2 * self._rng.random() - 1)
            job = Job(
                job_id=uuid.UUID(int=self._rng.getrandbits(128), version=4).hex[:25],
                type=job_type,
                payer=payer.lower(),
                input=body,
                params=params,
                created_at=now,
                done_at=now + (self._latency if latency_seconds is None else latency_seconds) * spread,
                fails=fails,
                reference_pathname=reference_pathname,
                media=media,
            )
            # Guard against the (astronomically unlikely) id collision rather than overwrite a job.
            while job.job_id in self._index.jobs:
                job = Job(**{**job.__dict__, "job_id": uuid.uuid4().hex[:25]})
            self._index.jobs[job.job_id] = job
            self._index.by_owner.setdefault(job.payer, []).append(job.job_id)
        return job

    def job(self, job_id: str) -> Job | None:
        """Any job by id."""
        with self._lock:
            return self._index.jobs.get(job_id)

    def job_for(self, job_id: str, owner: str) -> Job | None:
        """The job if ``owner`` paid for it, else None (callers answer 404 either way)."""
        job = self.job(job_id)
        return job if job is not None and job.payer == owner.lower() else None

    def jobs_of(self, owner: str) -> list[Job]:
        """``owner``'s jobs, newest first."""
        with self._lock:
            ids = self._index.by_owner.get(owner.lower(), [])
            return [self._index.jobs[i] for i in reversed(ids)]

    def create_upload(self, payer: str, filename: str, content_type: str) -> Upload:
        """Record a paid upload slot with a fresh pathname."""
        upload_id = str(uuid.uuid4())
        upload = Upload(
            upload_id, payer.lower(), f"uploads/{upload_id}/{filename}", content_type, filename, time.time()
        )
        with self._lock:
            self._index.uploads[upload_id] = upload
        return upload

    def upload_for(self, upload_id: str, owner: str) -> Upload | None:
        """The upload if ``owner`` paid for it, else None."""
        with self._lock:
            upload = self._index.uploads.get(upload_id)
        return upload if upload is not None and upload.payer == owner.lower() else None

    def counts(self) -> dict[str, int]:
        """How many jobs and uploads exist."""
        with self._lock:
            return {"jobs": len(self._index.jobs), "uploads": len(self._index.uploads)}
