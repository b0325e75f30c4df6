"""Every retry of the Prefect layer: which failures, how many times, after which delays, and the worst case.

None of them can pay twice: what is retried either moved no money (`FailedBeforePayment`, polls, downloads)
or starts by reading the payment-intent record, which re-sends a signed payment instead of signing anew.

| what | retried on | attempts | delays (s) | where |
| --- | --- | --- | --- | --- |
| one paid job (edit or generation) | `worth_retrying` | 3 | `JOB_ATTEMPT_DELAYS` 1, 4 | `flows/paid_job.py` |
| one upload inside a paid job | `FailedBeforePayment` | 3 | `UPLOAD_DELAYS` 1, 4 | `flows/paid_job.py` |
| task `upload-image` | `FailedBeforePayment` | 3 | 1, 4 | `UPLOAD_TASK` |
| tasks `submit-edit`, `submit-generation` | `is_transient`, store `OSError` | 3 | 1, 4 | `SUBMIT_TASK` |
| task `wait-for-job` | `is_transient`, HTTP 5xx | 3 | 2, 8 | `WAIT_TASK` |
| task `save-result`, `save-media` | `is_transient`, HTTP 5xx | 3 | 1, 4 | `SAVE_TASK` |

A failed upload is never retried by the job's attempt loop (its own loop above has decided): until the blob
URLs are recorded, another attempt would pay for those uploads again.

Retries that live elsewhere, on purpose:
- the client's re-sends of one signed payment after an ambiguous failure (`resend_attempts=2`, 0.5 s then 1 s,
  or the server's Retry-After up to 10 s: `prefect_stablestudio.client.paying`); its polls back off by 1.5x
  to `max_interval` and honour Retry-After, and a 404 before a job was ever seen is retried for
  `NOT_FOUND_GRACE_SECONDS` (10 s, `prefect_stablestudio.client.studio`); the HTTP edge itself
  (`prefect_stablestudio.client._http`) retries nothing;
- a cap's increment on Prefect's server answered 503 (busy): up to 50 tries, jittered 10 ms x attempt
  (at most ~18 s in all, `blocks/prefect_http.py`);
- `edit-sharded` starts a shard's run again when it died without a record (`shard_attempts`,
  `flows/shards.py`).

Worst case for one paid job inside a flow (each attempt resumes from the record, so later attempts skip what
is done): 3 attempts x `max_wait_seconds` of polling (600 s by default) + 5 s between attempts + 5 s per
input image between upload tries + the HTTP timeouts of each call (60 s by default) + the client's re-sends
(<= 20 s). With the defaults and one input image: about 31 minutes, almost all of it waiting on a job that
never finishes; a job that fails says so at once (`JobFailed` is never retried).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from prefect_stablestudio.client.errors import RateLimited, StableStudioError, UpstreamError
from prefect_stablestudio.flows.errors import FailedBeforePayment

__all__ = [
    "JOB_ATTEMPT_DELAYS",
    "SAVE_TASK",
    "SUBMIT_TASK",
    "UPLOAD_DELAYS",
    "UPLOAD_TASK",
    "WAIT_TASK",
    "TaskRetries",
    "is_transient",
    "worth_retrying",
]

JOB_ATTEMPT_DELAYS = (1.0, 4.0)
"""Seconds before the second and third attempt of a paid job (after its uploads)."""
UPLOAD_DELAYS = (1.0, 4.0)
"""Seconds before the second and third try of an upload that failed before paying."""

_TRANSIENT = (httpx.TransportError, RateLimited)
_PATH_ERRORS = (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_transient(exc: BaseException) -> bool:
    """A network error, a rate limit or a 5xx from StableStudio: worth another attempt.

    Example:
        >>> is_transient(httpx.ConnectError("refused")), is_transient(ValueError("bad"))
        (True, False)
    """
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, UpstreamError) and exc.status >= 500


def worth_retrying(exc: BaseException) -> bool:
    """A network error, a rate limit, a 5xx, or the intent store / destination hiccupping (not a bad path).

    Example:
        >>> worth_retrying(ConnectionResetError("peer reset")), worth_retrying(FileNotFoundError("x.png"))
        (True, False)
    """
    server_error = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500
    store_error = isinstance(exc, OSError) and not isinstance(exc, (StableStudioError, *_PATH_ERRORS))
    return is_transient(exc) or server_error or store_error


def _exception_of(state: State[Any]) -> BaseException | None:
    # The engine hands retry conditions a Failed state whose data is the exception itself.
    return state.data if isinstance(state.data, BaseException) else None


def _before_payment(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    return isinstance(_exception_of(state), FailedBeforePayment)


def _submit(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    exc = _exception_of(state)
    if exc is None:
        return False
    # An OSError is the intent store (e.g. S3) hiccupping; the next attempt reconciles first.
    return is_transient(exc) or (isinstance(exc, OSError) and not isinstance(exc, StableStudioError))


def _transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    exc = _exception_of(state)
    if exc is None:
        return False
    server_error = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500
    return is_transient(exc) or server_error


@dataclass(frozen=True)
class TaskRetries:
    """The retry settings of one Prefect task: `@task(retries=r.retries, retry_delay_seconds=r.delays)`."""

    retries: int
    delays: list[float]
    condition: Any


UPLOAD_TASK = TaskRetries(2, [1.0, 4.0], _before_payment)
SUBMIT_TASK = TaskRetries(2, [1.0, 4.0], _submit)
WAIT_TASK = TaskRetries(2, [2.0, 8.0], _transient)
SAVE_TASK = TaskRetries(2, [1.0, 4.0], _transient)
