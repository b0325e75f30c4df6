"""The Prefect layer's errors: one module, all under `StableStudioError`, each surviving a pickle round trip
(Prefect stores a failed run's exception in its result storage)."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from prefect_stablestudio.client.errors import StableStudioError
from prefect_stablestudio.flows import errors
from prefect_stablestudio.flows.models import BatchResult, EditOutcome, UnreconciledPayment

OUTCOME = EditOutcome(
    images=["s3://b/cat.png"], prompt="snow", status="failed", idempotency_key="k", error="x"
)
OWED = UnreconciledPayment(
    what="upload", nonce="0x" + "ab" * 32, amount_usd=Decimal("0.01"), pay_to="0x" + "11" * 20,
    resource_url="http://127.0.0.1/api/upload", status="settled",
)


@pytest.mark.parametrize(
    "error",
    [
        errors.EditFailed(OUTCOME),
        errors.EditBatchFailed(BatchResult(outcomes=[OUTCOME], spent_usd=Decimal("0.01"))),
        errors.UploadFailedAfterPaying.listing("s3://b/cat.png", [OWED], OSError("put failed")),
        errors.FailedBeforePayment("upload failed before paying: reset"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_is_a_stablestudio_error_and_pickles_whole(error: Exception) -> None:
    assert isinstance(error, StableStudioError)
    back = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(back) is type(error) and str(back) == str(error)
    for attribute in ("outcome", "result", "payments"):
        if hasattr(error, attribute):
            assert getattr(back, attribute) == getattr(error, attribute)


def test_the_module_lists_every_error_the_flows_raise_on_purpose() -> None:
    listed = {getattr(errors, name) for name in errors.__all__}
    assert errors.SpendCapExceeded in listed  # re-exported from blocks/budget.py (an import cycle otherwise)
    assert all(issubclass(e, StableStudioError) for e in listed)
