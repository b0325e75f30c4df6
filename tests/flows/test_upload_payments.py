"""Every cent an upload spends is reported, also when the upload fails after paying (found in the ledger)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from prefect_stablestudio.flows import BatchResult, edit_images
from prefect_stablestudio.simulator.faults import FaultRule
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")


async def run_batch(name: str, tmp_path: Path) -> tuple[BatchResult, str, str]:
    """One edit; returns the result, the run's log text and its artifacts' text."""
    source = tmp_path / "fox.png"
    source.write_bytes(png_bytes((9, 8, 7)))
    state = await edit_images(
        name,
        [str(source)],
        str(tmp_path / "out"),
        prompt="a fox in snow",
        intent_store_url=str(tmp_path / "intents"),
        expected_job_seconds=0.2,
        fail_on_error=False,
        return_state=True,
    )
    result: BatchResult = await state.result()
    run_id = state.state_details.flow_run_id
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    log_text = "\n".join(f"{log.level} {log.message}" for log in logs)
    return result, log_text, "\n".join(str(a.data) for a in artifacts if a.type in ("table", "markdown"))


async def test_an_upload_whose_reply_was_lost_after_settlement_is_reported_with_its_nonce(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim(faults=(FaultRule(route="upload", kind="reset_after_settlement", nth=(1,)),))
    name, wallet, key = await make_wallet(sim)

    result, logs, artifacts = await run_batch(name, tmp_path)

    (ledger,) = payments(sim, wallet.address, UPLOAD_ROUTE)  # the simulator took the $0.01
    assert payments(sim, wallet.address, EDIT_ROUTE) == []
    (outcome,) = result.outcomes
    assert outcome.status == "unknown" and "upload" in (outcome.error or "")
    (owed,) = result.unreconciled_payments
    assert outcome.unreconciled_payments == [owed]
    assert (owed.what, owed.status) == ("upload", "unknown")
    assert owed.nonce.lower() == ledger["nonce"].lower()
    assert owed.amount_usd == Decimal(ledger["amount"]) / 1_000_000 == Decimal("0.01")
    # Logged at WARNING with nonce and amount, listed in the table and the summary; the key nowhere.
    assert any(
        line.startswith("30 ") and owed.nonce in line and "$0.01" in line for line in logs.splitlines()
    )
    assert artifacts.count(owed.nonce) >= 2 and "Payments to reconcile" in artifacts
    assert key[2:].lower() not in (logs + artifacts).lower()


async def test_fees_of_an_upload_that_failed_after_paying_count_as_spent(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    # Both tickets arrive already expired: two settled fees, no blob.
    sim = make_sim(faults=(FaultRule(route="upload", kind="expired_upload_token", rate=1.0),))
    name, wallet, _ = await make_wallet(sim)

    result, logs, artifacts = await run_batch(name, tmp_path)

    ledger = payments(sim, wallet.address, UPLOAD_ROUTE)
    assert len(ledger) == 2
    (outcome,) = result.outcomes
    assert outcome.status == "failed" and outcome.upload_cost_usd == Decimal("0.02")
    assert result.spent_usd == Decimal("0.02")
    assert sorted(p.nonce.lower() for p in result.unreconciled_payments) == sorted(
        p["nonce"].lower() for p in ledger
    )
    assert {p.status for p in result.unreconciled_payments} == {"settled"}
    assert all(p.nonce in artifacts and p.nonce in logs for p in result.unreconciled_payments)
