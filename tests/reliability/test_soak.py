"""The fault soak in CI size: 30 edits through `edit_images` with 20 % faults on every route, seeded.

`python -m bench.soak` runs the same code with 100+ edits at realistic latency (outside CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakConfig, format_report, run_soak

pytestmark = pytest.mark.usefixtures("prefect_api")

CI = SoakConfig(
    count=30,
    fault_rate=0.2,
    latency=0.2,
    seed=11,
    concurrency=16,
    passes=3,
    retry_after=1,
    slow_delay=0.3,
    max_wait_seconds=60.0,
)


@pytest.mark.timeout(240)
async def test_thirty_edits_under_twenty_percent_faults_pay_once_and_lose_nothing(tmp_path: Path) -> None:
    report = await run_soak(CI, tmp_path)
    summary = format_report(report)
    print(summary)
    assert report.ok, summary
    # The faults did happen, on every kind asked for.
    kinds = {name.split(":", 1)[1] for name in report.faults_injected}
    assert kinds >= {
        "http_5xx",
        "rate_limited_429",
        "slow",
        "reset_before_settlement",
        "reset_after_settlement",
        "job_failure",
    }, summary
    assert sum(report.final.values()) == CI.count
    # Exactly one edit payment per finished edit; every other payment is on the reconciliation list.
    assert report.finished_edits == report.finished_edits_paid_once > 0
    assert report.edit_payments == report.finished_edits + len(report.reconciliation)
    assert report.orphan_payments == [] and report.double_paid == []
    # Failed-after-paying edits are the failed jobs, each listed with its payment.
    assert all(r["transaction"] and r["nonce"] for r in report.reconciliation)
    # Upload fees: one per used upload as the flows report them, plus any lost paid reply, listed.
    assert report.upload_payments == report.upload_payments_reported + len(report.lost_upload_fees)
    assert report.upload_payments_reported >= CI.count
