"""The protocol client alone under the simulator's faults (no Prefect): paid work is never lost or paid twice.

Timeouts live here: the client's timeout is a constructor argument, so a `slow` fault just past it is a real
timeout at CI speed (the flows use the 30 s default; the soak command produces those).
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from PIL import Image

from prefect_stablestudio.client import (
    EditRequest,
    JobFailed,
    NoHooks,
    Payment,
    PaymentOutcome,
    PaymentOutcomeUnknown,
    StableStudioClient,
    StableStudioError,
)
from prefect_stablestudio.simulator import FaultRule

EDIT_ROUTE = "flux-2-pro/edit"


def png(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (seed % 256, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


class Ledger(NoHooks):
    """Every payment the client signed and what it was told about each (the caller's reconciliation list)."""

    def __init__(self) -> None:
        self.signed: list[Payment] = []
        self.outcomes: dict[str, list[str]] = {}

    async def after_signing(self, payment: Payment) -> None:
        self.signed.append(payment)

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        self.outcomes.setdefault(payment.nonce, []).append(outcome.status)


def client(key: str, sim: Any, hooks: Any = None, **kw: Any) -> StableStudioClient:
    kw.setdefault("resend_backoff", 0.05)
    return StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url, hooks=hooks, **kw)


def settled(sim: Any, address: str, route: str) -> list[dict[str, Any]]:
    return [
        p
        for p in sim.state()["ledger"]["payments"]
        if p["payer"].lower() == address.lower() and p["route"] == route
    ]


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(route="upload-confirm", kind="http_5xx", nth=(1, 2)),
        FaultRule(route="upload-confirm", kind="rate_limited_429", nth=(1,), retry_after=0),
        FaultRule(route="upload-confirm", kind="slow", nth=(1,), delay=0.8),
        FaultRule(route="blob-put", kind="http_5xx", nth=(1, 2, 3)),
        FaultRule(route="blob-put", kind="rate_limited_429", nth=(1, 2, 3), retry_after=0),
        FaultRule(route="blob-put", kind="slow", nth=(1, 2, 3), delay=0.8),
    ],
    ids=["confirm-5xx", "confirm-429", "confirm-timeout", "blob-put-5xx", "blob-put-429", "blob-put-timeout"],
)
async def test_a_paid_upload_survives_faults_after_payment(
    make_sim: Any, key: str, fresh_account: LocalAccount, rule: FaultRule
) -> None:
    sim = make_sim(faults=(rule,))
    async with client(key, sim, timeout=0.5) as c:
        result = await c.upload_detailed(png())
    assert result.blob_url.startswith(sim.base_url)
    (paid,) = settled(sim, fresh_account.address, "upload")
    assert [p.nonce for p in result.payments] == [paid["nonce"]]
    assert sim.state()["counters"]["faults_injected_total"] >= 1


REQUEST_KINDS = ("http_5xx", "rate_limited_429", "slow")
ROUTES = ("flux-edit", "upload", "upload-confirm", "blob-put", "job", "jobs", "blob-get")


def everywhere(rate: float) -> tuple[FaultRule, ...]:
    """`rate` of faults on every route; slow faults outlast the client's timeout."""
    rules = [
        FaultRule(route=r, kind=k, rate=rate / 3, retry_after=1, delay=0.8)
        for r in ROUTES
        for k in REQUEST_KINDS
    ]
    for route in ("flux-edit", "upload"):
        rules += [
            FaultRule(route=route, kind="reset_before_settlement", rate=rate / 2),
            FaultRule(route=route, kind="reset_after_settlement", rate=rate / 2),
        ]
    rules.append(FaultRule(route="flux-edit", kind="job_failure", rate=rate))
    return tuple(rules)


async def _retry_unpaid(hooks: Ledger, call: Any) -> Any:
    """Run `call` again only while it failed before signing anything (a retry cannot pay twice then)."""
    for attempt in range(6):
        before = len(hooks.signed)
        try:
            return await call()
        except (StableStudioError, httpx.TransportError):
            if len(hooks.signed) > before or attempt == 5:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


async def _one_edit(sim: Any, key: str, hooks: Ledger, i: int) -> dict[str, Any]:
    # One client per edit: "did this call sign anything?" must not see the other edits' payments.
    async with client(key, sim, hooks, timeout=0.5) as c:
        return await _edit_with(c, hooks, i)


async def _edit_with(c: StableStudioClient, hooks: Ledger, i: int) -> dict[str, Any]:
    record: dict[str, Any] = {"edit": i, "status": "failed", "payment": None}
    try:
        blob = await _retry_unpaid(hooks, lambda: c.upload(png(i)))
    except PaymentOutcomeUnknown as exc:
        record.update(status="upload_lost", upload_payment=exc.payment.nonce)
        return record
    except (StableStudioError, httpx.TransportError) as exc:
        record.update(error=repr(exc))
        return record
    request = EditRequest(prompt=f"edit {i}", images=[blob])
    resend: list[Payment] = []
    for _ in range(4):
        try:
            job = await _retry_unpaid(
                hooks, lambda: c.submit_edit(request, payment=resend[-1] if resend else None)
            )
            break
        except PaymentOutcomeUnknown as exc:
            resend.append(exc.payment)  # resume: only ever re-send this one
            record.update(status="unknown", payment=exc.payment.nonce)
        except (StableStudioError, httpx.TransportError) as exc:
            record.update(error=repr(exc))
            if resend:
                continue
            return record
    else:
        return record
    record["payment"] = job.payment.nonce if job.payment else None
    try:
        await c.wait_for_job(job.job_id, timeout=30, expected_seconds=0.2)
    except JobFailed as exc:
        record.update(status="failed_after_paying", job_id=job.job_id, error=str(exc))
        return record
    record.update(status="done", job_id=job.job_id)
    return record


async def test_thirty_edits_with_timeouts_resets_and_failures_pay_once_each(
    make_sim: Any, key: str, fresh_account: LocalAccount
) -> None:
    sim = make_sim(faults=everywhere(0.2), seed=5)
    per_edit = [Ledger() for _ in range(30)]
    records = await asyncio.gather(*(_one_edit(sim, key, h, i) for i, h in enumerate(per_edit)))
    hooks = Ledger()
    for h in per_edit:
        hooks.signed += h.signed
        hooks.outcomes.update(h.outcomes)

    state = sim.state()
    kinds = {k.split(":", 1)[1] for k in state["counters"]["faults_injected"]}
    assert kinds >= {
        "http_5xx",
        "rate_limited_429",
        "slow",
        "reset_before_settlement",
        "reset_after_settlement",
    }
    edits = settled(sim, fresh_account.address, EDIT_ROUTE)
    uploads = settled(sim, fresh_account.address, "upload")
    signed = {p.nonce.lower(): p for p in hooks.signed}
    # Nothing was paid without the caller holding the signed payment; nothing called "rejected" moved.
    for p in edits + uploads:
        assert p["nonce"] in signed
        assert "rejected" not in hooks.outcomes[signed[p["nonce"]].nonce]
    by_nonce = Counter(p["nonce"] for p in edits)
    statuses = Counter(r["status"] for r in records)
    assert statuses["done"] >= 15, statuses
    for r in records:
        nonce = (r["payment"] or "").lower()
        if r["status"] in ("done", "failed_after_paying"):
            assert by_nonce[nonce] == 1, r  # exactly one payment per finished edit, listed for reconciliation
        elif r["status"] == "unknown":
            assert by_nonce[nonce] <= 1, r
    # Every edit payment belongs to exactly one edit record.
    owners = Counter(r["payment"].lower() for r in records if r["payment"])
    assert all(owners[p["nonce"]] == 1 for p in edits)
    # Every upload fee is either behind a used upload or a lost upload reply the caller holds the payment of.
    lost = {r["upload_payment"].lower() for r in records if r["status"] == "upload_lost"}
    assert len(uploads) >= sum(1 for r in records if r["status"] not in ("upload_lost",) and r.get("job_id"))
    assert {p["nonce"] for p in uploads} <= set(signed) and lost <= set(signed)


async def test_a_lost_reply_is_resumed_after_many_newer_jobs_of_the_same_wallet(
    make_sim: Any, key: str, fresh_account: LocalAccount
) -> None:
    """A busy wallet: by the time a rerun re-sends the payment, 30 newer jobs exist (the soak found this)."""
    sim = make_sim(faults=(FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),))
    async with client(key, sim, resend_attempts=0) as c:
        blob = await c.upload(png())
        lost = EditRequest(prompt="the lost one", images=[blob])
        with pytest.raises(PaymentOutcomeUnknown) as info:
            await c.submit_edit(lost)
        await asyncio.gather(
            *(c.submit_edit(EditRequest(prompt=f"newer {i}", images=[blob])) for i in range(30))
        )
        job = await c.submit_edit(lost, payment=info.value.payment)
        assert c.stats.payments_signed == 32  # one upload, the lost edit, 30 newer edits
    assert job.resumed and job.payment == info.value.payment
    edits = settled(sim, fresh_account.address, EDIT_ROUTE)
    assert len(edits) == 31 and [p["resource_id"] for p in edits].count(job.job_id) == 1
