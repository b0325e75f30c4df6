"""A blocking facade for scripts: the async client running on its own event loop in a private thread.

Example:
    ```python
    from prefect_stablestudio.client import EditRequest
    from prefect_stablestudio.client.sync import StableStudio

    with StableStudio(private_key) as studio:
        blob_url = studio.upload("photo.png")
        job = studio.submit_edit(EditRequest(prompt="make it snow", images=[blob_url]))
        result = studio.wait_for_job(job.job_id)
        open("out.webp", "wb").write(studio.download(result.image_url))
    ```
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from prefect_stablestudio.client.catalog import GenerationBody
from prefect_stablestudio.client.models import EditRequest, Job, JobResult, SubmittedJob, UploadResult
from prefect_stablestudio.client.payment import Payment
from prefect_stablestudio.client.sources import ImageSource
from prefect_stablestudio.client.studio import StableStudioClient

__all__ = ["StableStudio"]

T = TypeVar("T")


class StableStudio:
    """Blocking twin of `StableStudioClient`, taking the same arguments.

    Calls run on the facade's own loop, so it also works where an event loop is already running (notebooks).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stablestudio-sync", daemon=True)
        self._thread.start()
        try:
            self.client = self._run(self._make(*args, **kwargs))
        except BaseException:
            self._stop()
            raise

    @staticmethod
    async def _make(*args: Any, **kwargs: Any) -> StableStudioClient:
        return StableStudioClient(*args, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def address(self) -> str:
        """The wallet address."""
        return self.client.address

    def upload(
        self, source: ImageSource, *, filename: str | None = None, content_type: str | None = None
    ) -> str:
        """See `StableStudioClient.upload`."""
        return self._run(self.client.upload(source, filename=filename, content_type=content_type))

    def upload_detailed(self, source: ImageSource, **kwargs: Any) -> UploadResult:
        """See `StableStudioClient.upload_detailed`."""
        return self._run(self.client.upload_detailed(source, **kwargs))

    def submit_edit(
        self, request: EditRequest, *, payment: Payment | None = None, idempotency_key: str | None = None
    ) -> SubmittedJob:
        """See `StableStudioClient.submit_edit`."""
        return self._run(self.client.submit_edit(request, payment=payment, idempotency_key=idempotency_key))

    def generate(
        self, request: GenerationBody, *, payment: Payment | None = None, idempotency_key: str | None = None
    ) -> SubmittedJob:
        """See `StableStudioClient.generate`."""
        return self._run(self.client.generate(request, payment=payment, idempotency_key=idempotency_key))

    def get_job(self, job_id: str) -> Job:
        """See `StableStudioClient.get_job`."""
        return self._run(self.client.get_job(job_id))

    def wait_for_job(self, job_id: str, **kwargs: Any) -> JobResult:
        """See `StableStudioClient.wait_for_job` (an async `on_progress` runs on the facade's loop)."""
        return self._run(self.client.wait_for_job(job_id, **kwargs))

    def download(self, url: str) -> bytes:
        """See `StableStudioClient.download`."""
        return self._run(self.client.download(url))

    def close(self) -> None:
        """Close the client and stop the private loop. Idempotent."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.client.aclose())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> StableStudio:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StableStudio(address={self.address!r}, base_url={self.client.base_url!r})"
