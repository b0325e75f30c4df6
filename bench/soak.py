"""Soak: many edits through the `edit_images` flow while the simulator injects faults on every route.

Each edit must end done or failed with a resumable record; the simulator's ledger must show exactly one edit
payment per finished edit and no payment that no record knows about; every edit that failed after paying is
listed with its payment for reconciliation. Reruns (same inputs, same intent store) finish what was paid and
never pay for it again.

    python -m bench.soak --count 100 --fault-rate 0.2            # realistic latency, minutes
    python -m bench.soak --count 30 --latency 0.2 --slow-delay 0.3 --retry-after 0 --json soak.json

Without PREFECT_API_URL it starts a temporary Prefect server (prefect_test_harness) and a temporary
PREFECT_HOME; nothing touches any address but loopback. The same `run_soak` backs the CI test
(tests/reliability/test_soak.py) with a small count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from prefect_stablestudio.client.money import dollars_from_atomic

__all__ = ["SoakConfig", "fault_plan", "main", "run_soak"]

EDIT_ROUTE = "flux-2-pro/edit"
UPLOAD_ROUTE = "upload"
# Every route a paid edit touches, with the simulator's route names.
REQUEST_ROUTES = ("flux-edit", "upload", "upload-confirm", "blob-put", "job", "jobs", "blob-get")
PAID_ROUTES = ("flux-edit", "upload")
REQUEST_KINDS = ("http_5xx", "rate_limited_429", "slow")
SETTLEMENT_KINDS = ("reset_before_settlement", "reset_after_settlement")


@dataclass(frozen=True)
class SoakConfig:
    """What to run: how many edits, how hostile, how fast."""

    count: int = 100
    fault_rate: float = 0.2
    latency: float = 5.0
    seed: int = 7
    concurrency: int = 16
    passes: int = 3
    retry_after: int = 1
    slow_delay: float = 31.0  # past the client's default 30 s timeout: a slow fault is a timeout
    max_wait_seconds: float = 120.0


def fault_plan(rate: float, *, retry_after: int = 1, slow_delay: float = 31.0) -> list[Any]:
    """Faults at `rate` on every route: each request, each verified payment and each new job.

    A request meets one of 5xx / 429 (with Retry-After) / slow at about `rate`; a verified payment is reset
    before or after settlement at about `rate`; an edit job fails at `rate`.
    """
    from prefect_stablestudio.simulator import FaultRule

    share = rate / len(REQUEST_KINDS)
    rules = [
        FaultRule(route=route, kind=kind, rate=share, retry_after=retry_after, delay=slow_delay)
        for route in REQUEST_ROUTES
        for kind in REQUEST_KINDS
    ]
    rules += [
        FaultRule(route=route, kind=kind, rate=rate / len(SETTLEMENT_KINDS))
        for route in PAID_ROUTES
        for kind in SETTLEMENT_KINDS
    ]
    rules.append(FaultRule(route="flux-edit", kind="job_failure", rate=rate))
    return rules


@dataclass
class PassReport:
    """One run of the batch flow."""

    number: int
    seconds: float
    statuses: dict[str, int]
    paid_now: int
    upload_fees_reported_usd: str


@dataclass
class SoakReport:
    """Everything the soak saw and checked. `problems` is empty when every invariant held."""

    config: dict[str, Any]
    passes: list[PassReport] = field(default_factory=list)
    final: dict[str, int] = field(default_factory=dict)
    faults_injected: dict[str, int] = field(default_factory=dict)
    faults_injected_total: int = 0
    edit_payments: int = 0
    finished_edits: int = 0
    finished_edits_paid_once: int = 0
    upload_payments: int = 0
    upload_payments_reported: int = 0
    orphan_payments: list[dict[str, Any]] = field(default_factory=list)
    double_paid: list[str] = field(default_factory=list)
    reconciliation: list[dict[str, Any]] = field(default_factory=list)
    outcome_unknown: list[dict[str, Any]] = field(default_factory=list)
    lost_upload_fees: list[dict[str, Any]] = field(default_factory=list)
    lost_upload_replies: int = 0
    problems: list[str] = field(default_factory=list)
    spent_usdc: str = "0"
    wallet_block: str = ""
    ledger: list[dict[str, Any]] = field(default_factory=list)
    """The simulator's settled payments of the soak's wallet (the receipts ledger is checked against it)."""

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return not self.problems


def _png(index: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
    Image.new("RGB", (24, 24), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def run_soak(config: SoakConfig, workdir: Path | None = None) -> SoakReport:
    """Run the soak against a fresh simulator; needs a Prefect API (see `prefect_api_context`)."""
    from eth_account import Account

    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.flows import EditItem, IntentStore, edit_images
    from prefect_stablestudio.simulator import SimulatorSettings, run_simulator

    report = SoakReport(config=asdict(config))
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        inputs = root / "in"
        inputs.mkdir(parents=True, exist_ok=True)
        images: list[Any] = []
        for i in range(config.count):
            path = inputs / f"img{i:04d}.png"
            path.write_bytes(_png(i))
            images.append(EditItem(images=[str(path)]))
        store_url = str(root / "intents")
        settings = SimulatorSettings(
            latency_seconds=config.latency,
            seed=config.seed,
            faults=tuple(
                fault_plan(config.fault_rate, retry_after=config.retry_after, slow_delay=config.slow_delay)
            ),
        )
        async with run_simulator(settings) as sim:
            account = Account.create()
            wallet = StableStudioWallet(
                private_key="0x" + bytes(account.key).hex(),
                base_url=sim.base_url,
                blob_api_url=sim.blob_api_url,
            )
            name = f"soak-{uuid.uuid4().hex[:10]}"
            await wallet.save(name, overwrite=True)
            report.wallet_block = name
            outcomes: dict[str, Any] = {}
            upload_fees = Decimal(0)
            for number in range(1, config.passes + 1):
                started = time.monotonic()
                result = await edit_images(
                    name,
                    images,
                    str(root / "out"),
                    prompt="make it snow",
                    max_concurrency=config.concurrency,
                    intent_store_url=store_url,
                    max_wait_seconds=config.max_wait_seconds,
                    fail_on_error=False,
                )
                upload_fees += sum((o.upload_cost_usd for o in result.outcomes), Decimal(0))
                for o in result.outcomes:
                    outcomes[o.images[0]] = o
                report.passes.append(
                    PassReport(
                        number=number,
                        seconds=round(time.monotonic() - started, 2),
                        statuses=dict(Counter(o.status for o in result.outcomes)),
                        paid_now=sum(1 for o in result.outcomes if o.paid_now),
                        upload_fees_reported_usd=str(
                            sum((o.upload_cost_usd for o in result.outcomes), Decimal(0))
                        ),
                    )
                )
                if all(o.ok for o in result.outcomes):
                    break
            state = sim.state()
            report.ledger = [
                p for p in state["ledger"]["payments"] if p["payer"].lower() == account.address.lower()
            ]
            store = IntentStore(store_url)
            intents = {o.idempotency_key: await store.get(o.idempotency_key) for o in outcomes.values()}
            _account(report, state, account.address, outcomes, intents, upload_fees)
    return report


def _account(
    report: SoakReport,
    state: dict[str, Any],
    address: str,
    outcomes: dict[str, Any],
    intents: dict[str, Any],
    upload_fees: Decimal,
) -> None:
    """Check the ledger against the records: the invariants of the soak."""
    mine = [p for p in state["ledger"]["payments"] if p["payer"].lower() == address.lower()]
    edit_payments = [p for p in mine if p["route"] == EDIT_ROUTE]
    by_nonce = Counter(p["nonce"].lower() for p in edit_payments)
    report.faults_injected = state["counters"]["faults_injected"]
    report.faults_injected_total = state["counters"]["faults_injected_total"]
    report.edit_payments = len(edit_payments)
    report.spent_usdc = state["spend_usdc"].get(address.lower(), "0")
    report.final = dict(Counter(o.status for o in outcomes.values()))

    recorded: dict[str, str] = {}  # nonce -> intent key
    for key, intent in intents.items():
        if intent is not None and intent.payment is not None:
            recorded[intent.payment.nonce.lower()] = key
    for p in edit_payments:
        if p["nonce"].lower() not in recorded:
            report.orphan_payments.append(p)
    report.double_paid = [n for n, c in by_nonce.items() if c > 1]
    if report.orphan_payments:
        report.problems.append(f"{len(report.orphan_payments)} edit payments that no record knows about")
    if report.double_paid:
        report.problems.append(f"{len(report.double_paid)} authorizations settled twice")

    for uri, o in sorted(outcomes.items()):
        intent = intents.get(o.idempotency_key)
        nonce = intent.payment.nonce.lower() if intent is not None and intent.payment else None
        settled = nonce is not None and by_nonce[nonce] == 1
        if o.ok:
            report.finished_edits += 1
            if settled:
                report.finished_edits_paid_once += 1
            else:
                report.problems.append(f"{uri}: finished without exactly one ledger payment")
            continue
        if settled:
            payment = next(p for p in edit_payments if p["nonce"].lower() == nonce)
            report.reconciliation.append(
                {
                    "image": uri,
                    "status": o.status,
                    "record": intent.status if intent else None,
                    "job_id": o.job_id,
                    "nonce": nonce,
                    "transaction": payment["transaction"],
                    "amount": payment["amount"],
                    "error": (o.error or "")[:200],
                }
            )
            amount_usd = dollars_from_atomic(payment["amount"])
            if o.cost_usd != amount_usd and nonce not in (o.error or "").lower():
                report.problems.append(f"{uri}: paid and failed, but its outcome does not show the payment")
            if intent is None or intent.status not in ("failed", "submitted", "unknown", "signed"):
                report.problems.append(
                    f"{uri}: paid and failed, but its record says {intent and intent.status}"
                )
        elif o.status == "unknown":
            report.outcome_unknown.append({"image": uri, "error": (o.error or "")[:200]})
        if not o.error:
            report.problems.append(f"{uri}: {o.status} without an error message")

    uploads = [p for p in mine if p["route"] == UPLOAD_ROUTE]
    report.upload_payments = len(uploads)
    report.upload_payments_reported = int(upload_fees / Decimal("0.01"))
    used = " ".join(
        rec.get("blob_url", "") for intent in intents.values() if intent is not None for rec in intent.inputs
    )
    # An upload whose paid reply was lost cannot be recovered without the payment-identifier extension (no
    # GET returns a ticket): its fee is listed for reconciliation, and each needs a lost reply to explain it.
    report.lost_upload_fees = [
        {
            "upload_id": p["resource_id"],
            "nonce": p["nonce"],
            "transaction": p["transaction"],
            "amount": p["amount"],
        }
        for p in uploads
        if f"/{p['resource_id']}/" not in used
    ]
    report.lost_upload_replies = report.faults_injected.get(f"{UPLOAD_ROUTE}:reset_after_settlement", 0)
    if report.upload_payments - len(report.lost_upload_fees) != report.upload_payments_reported:
        report.problems.append(
            f"{report.upload_payments} upload payments settled, {report.upload_payments_reported} reported, "
            f"{len(report.lost_upload_fees)} listed as lost"
        )


@contextlib.contextmanager
def prefect_api_context() -> Iterator[None]:
    """Use $PREFECT_API_URL if set, else a temporary Prefect server and PREFECT_HOME for the soak."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    home = tempfile.mkdtemp(prefix="soak-prefect-")
    os.environ.setdefault("PREFECT_HOME", home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def format_report(report: SoakReport) -> str:
    """The human summary printed at the end."""
    c = report.config
    lines = [
        f"soak: {c['count']} edits, {c['fault_rate']:.0%} faults on every route, latency {c['latency']} s, "
        f"seed {c['seed']}",
    ]
    for p in report.passes:
        lines.append(f"  pass {p.number}: {p.statuses} in {p.seconds} s, {p.paid_now} paid now")
    lines += [
        f"faults injected and survived: {report.faults_injected_total} "
        + ", ".join(f"{k}={v}" for k, v in sorted(report.faults_injected.items())),
        f"final: {report.final}",
        f"edit payments: {report.edit_payments}; finished edits: {report.finished_edits}, "
        f"paid exactly once: {report.finished_edits_paid_once}",
        f"upload payments: {report.upload_payments} "
        f"(reported by the flows: {report.upload_payments_reported})",
        f"failed after paying (reconciliation list): {len(report.reconciliation)}",
    ]
    lines += [
        f"  {r['image']}: job {r['job_id']} nonce {r['nonce'][:18]}... tx {r['transaction'][:18]}... "
        f"{r['amount']} ({r['record']})"
        for r in report.reconciliation
    ]
    lines.append(
        f"upload fees paid but unused (reconciliation list): {len(report.lost_upload_fees)} "
        f"({report.lost_upload_replies} upload replies were lost after settling)"
    )
    lines += [
        f"  upload {u['upload_id']} nonce {u['nonce'][:18]}... {u['amount']}" for u in report.lost_upload_fees
    ]
    lines.append(f"outcome still unknown (a rerun re-sends the same payment): {len(report.outcome_unknown)}")
    lines.append(f"orphan payments: {len(report.orphan_payments)}; double-paid: {len(report.double_paid)}")
    lines.append(f"spent: {report.spent_usdc} USDC")
    lines.append("OK" if report.ok else "PROBLEMS:\n  " + "\n  ".join(report.problems))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: `python -m bench.soak`."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="edits (default 100)")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="fault rate per route (default 0.2)")
    parser.add_argument("--latency", type=float, default=5.0, help="simulated job seconds (default 5)")
    parser.add_argument("--seed", type=int, default=7, help="fault and jitter seed (default 7)")
    parser.add_argument("--concurrency", type=int, default=16, help="edits in flight (default 16)")
    parser.add_argument("--passes", type=int, default=3, help="runs of the batch at most (default 3)")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of 429 faults (default 1)")
    parser.add_argument(
        "--slow-delay", type=float, default=31.0, help="seconds a slow fault holds (default 31: a timeout)"
    )
    parser.add_argument("--json", default="soak-report.json", help="where to write the JSON report")
    args = parser.parse_args(argv)
    config = SoakConfig(
        count=args.count,
        fault_rate=args.fault_rate,
        latency=args.latency,
        seed=args.seed,
        concurrency=args.concurrency,
        passes=args.passes,
        retry_after=args.retry_after,
        slow_delay=args.slow_delay,
        max_wait_seconds=max(120.0, args.latency * 20),
    )
    with prefect_api_context():
        report = asyncio.run(run_soak(config))
    Path(args.json).write_text(json.dumps(asdict(report), indent=1, default=str))
    print(format_report(report))
    print(f"report written to {args.json}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
