"""Every error the Prefect layer raises on purpose, all under the client's `StableStudioError`.

One `except StableStudioError` catches what the plugin raises deliberately (the client's errors, listed in
`prefect_stablestudio.client.errors`, and these); anything else is a bug or the platform failing.

| error | raised when | money |
| --- | --- | --- |
| `SpendCapExceeded` (`blocks/budget.py`) | a cap (run, 24 h, lifetime) refuses a payment | nothing signed |
| `FailedBeforePayment` | an upload failed transiently before anything was signed | nothing paid: retried |
| `UploadFailedAfterPaying` | an upload failed after its fee was paid, or may have been | in `payments` |
| `EditFailed` | `edit_image` produced no saved result | `outcome` says what was paid |
| `EditBatchFailed` | some edits of `edit_images` failed | `result` holds every outcome |

`SpendCapExceeded` stays in `blocks/budget.py` (the blocks package is imported by this one: moving it here
would make `blocks` import `flows`); it is re-exported here so the table above is the whole list.

Each error that takes more than a message defines `__reduce__`: Prefect pickles a failed run's exception into
its result storage, and unpickling calls the class with `args` alone unless told otherwise.
"""

from __future__ import annotations

from typing import Any

from prefect_stablestudio.blocks.budget import SpendCapExceeded
from prefect_stablestudio.client.errors import StableStudioError
from prefect_stablestudio.flows.models import BatchResult, EditOutcome, UnreconciledPayment

__all__ = [
    "EditBatchFailed",
    "EditFailed",
    "FailedBeforePayment",
    "SpendCapExceeded",
    "StableStudioError",
    "UploadFailedAfterPaying",
]


class FailedBeforePayment(StableStudioError):
    """A transient failure before anything was signed: retrying cannot pay twice."""


class UploadFailedAfterPaying(StableStudioError):
    """An upload failed after its fee was paid, or may have been: `payments` lists them for reconciliation.

    A rerun of the same upload with the same intent store uses the ticket paid for here while its token is
    valid (about 5 minutes, see `flows/uploads.py`); after that, or when the reply with the ticket was lost (a
    ticket cannot be recovered from a payment alone), it pays for a new one.

    Attributes:
        payments: the payments that moved money (status "settled") or may have ("unknown").
    """

    def __init__(self, message: str, *, payments: list[UnreconciledPayment]) -> None:
        super().__init__(message)
        self.payments = payments

    @classmethod
    def listing(
        cls, uri: str, owed: list[UnreconciledPayment], exc: BaseException
    ) -> UploadFailedAfterPaying:
        """The error for an upload of `uri` that failed with `exc` after the payments `owed`."""
        listed = "; ".join(f"nonce {p.nonce} ${p.amount_usd} {p.status}" for p in owed)
        return cls(
            f"upload of {uri[:200]} failed after paying ({type(exc).__name__}: {str(exc)[:300]}); "
            f"payments to reconcile: {listed}",
            payments=owed,
        )

    def __reduce__(self) -> Any:
        return (_rebuild_upload_failed, (str(self), self.payments))


def _rebuild_upload_failed(message: str, payments: list[UnreconciledPayment]) -> UploadFailedAfterPaying:
    return UploadFailedAfterPaying(message, payments=payments)


class EditFailed(StableStudioError):
    """An edit did not produce a saved result. `outcome` says why (and whether it was paid)."""

    def __init__(self, outcome: EditOutcome) -> None:
        super().__init__(f"edit of {outcome.images[0]} {outcome.status}: {outcome.error}")
        self.outcome = outcome

    def __reduce__(self) -> Any:
        return (EditFailed, (self.outcome,))


class EditBatchFailed(StableStudioError):
    """Some edits of a batch failed; the others are saved. `result` holds every outcome."""

    def __init__(self, result: BatchResult) -> None:
        failed = result.failed
        first = f" (first: {failed[0].images[0]}: {failed[0].error})" if failed else ""
        super().__init__(f"{len(failed)} of {len(result.outcomes)} edits failed{first}")
        self.result = result

    def __reduce__(self) -> Any:
        return (EditBatchFailed, (self.result,))
