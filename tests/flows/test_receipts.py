"""Receipts and spend events after a fault soak: the ledger holds one line per payment the simulator settled,
no more, no less; the CSV totals equal the simulator's; the key appears in no receipt, CSV row or event.

The events are read back from the session's Prefect API (its events filter endpoint).
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.soak import SoakConfig, run_soak
from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.events import (
    JOB_FAILED,
    PAYMENT_REFUSED,
    PAYMENT_SETTLED,
    crossed_thresholds,
)
from prefect_stablestudio.cli import app
from prefect_stablestudio.flows import EditItem, EditOptions, edit_images
from prefect_stablestudio.flows.receipts import ReceiptBook, route_of
from prefect_stablestudio.flows.spend_report import daily_totals, explorer_link, settled_total, write_csv
from tests.helpers.events import events_when, restart_events_worker
from tests.helpers.ledger import png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")

SMALL = SoakConfig(
    count=12, fault_rate=0.2, latency=0.1, seed=5, concurrency=8, passes=3, retry_after=1, slow_delay=0.2,
    max_wait_seconds=60.0,
)


def test_routes_thresholds_and_links_are_plain_functions() -> None:
    assert route_of("http://127.0.0.1:1/api/generate/flux-2-pro/edit") == "flux-2-pro/edit"
    assert route_of("http://127.0.0.1:1/api/upload") == "upload"
    assert crossed_thresholds(100, 0, 100) == [50, 80, 100]
    assert crossed_thresholds(100, 79, 80) == [80]
    assert crossed_thresholds(100, 80, 81) == []
    assert explorer_link("eip155:84532", "0x1") == "https://sepolia.basescan.org/tx/0x1"
    assert explorer_link("tempo:4217", "0x2") == "https://explore.tempo.xyz/tx/0x2"


@pytest.mark.timeout(240)
async def test_receipts_after_a_fault_soak_match_the_simulators_ledger(
    tmp_path: Path,
) -> None:
    await restart_events_worker()  # to the session's API, whatever an earlier test pointed it at
    report = await run_soak(SMALL, tmp_path)
    assert report.faults_injected_total > 0
    book_dir = tmp_path / "intents" / "receipts"
    receipts = await ReceiptBook(str(book_dir)).read()
    ledger = {p["nonce"].lower(): p for p in report.ledger}
    assert ledger, "the soak paid nothing"

    # One line per payment: every nonce once, whatever outcomes it went through.
    nonces = [r.nonce.lower() for r in receipts]
    assert len(nonces) == len(set(nonces))
    settled = {r.nonce.lower(): r for r in receipts if r.outcome == "settled"}
    unknown = {r.nonce.lower(): r for r in receipts if r.outcome == "unknown"}
    # Every payment the simulator settled has its line, settled or (a lost reply never resolved) unknown...
    assert set(ledger) <= set(settled) | set(unknown)
    # ...and no line claims a settlement the simulator does not hold.
    assert set(settled) <= set(ledger)
    for nonce, receipt in settled.items():
        assert receipt.amount == ledger[nonce]["amount"]
        assert receipt.route == ledger[nonce]["route"]
        if receipt.transaction:
            assert receipt.transaction == ledger[nonce]["transaction"]
        assert receipt.inputs and receipt.flow_run_id
    assert all(r.job_id for r in settled.values() if r.route != "upload")
    # Settled-but-unknown payments (lost replies) are the only difference, each one on the simulator's books.
    missing = set(ledger) - set(settled)
    ledger_total = sum(int(p["amount"]) for p in report.ledger)
    assert settled_total(receipts) + sum(unknown[n].amount for n in missing) == ledger_total

    # The CSV: one row per receipt, totals equal to the simulator's, an explorer link per transaction.
    out = tmp_path / "spend.csv"
    assert write_csv(receipts, out) == len(receipts)
    rows = list(csv.DictReader(out.open()))
    csv_settled = sum(Decimal(r["amount_usd"]) for r in rows if r["outcome"] == "settled")
    csv_missing = sum(Decimal(r["amount_usd"]) for r in rows if r["nonce"].lower() in missing)
    assert (csv_settled + csv_missing) * 1_000_000 == ledger_total
    linked = [r for r in rows if r["transaction"]]
    assert linked and all(r["explorer"] == f"https://basescan.org/tx/{r['transaction']}" for r in linked)
    assert sum(t.amount for t in daily_totals(receipts)) == settled_total(receipts)

    # The CLI reads the same ledger.
    args = ["spend", "--receipts", str(book_dir), "--csv", str(tmp_path / "c.csv")]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)  # the CLI runs its own event loop
    assert result.exit_code == 0, result.output
    assert f"${Decimal(settled_total(receipts)) / 1_000_000:f}".rstrip("0").rstrip(".") in result.output

    # One settled event per settled receipt, read back from the Prefect API, with its payload.
    wallet_id = f"stablestudio.wallet.{report.ledger[0]['payer'].lower()}"

    def all_settled(found: list[dict[str, Any]]) -> bool:
        return bool(sum(e["event"] == PAYMENT_SETTLED for e in found) >= len(settled))

    events = await events_when("stablestudio.", wallet_id, all_settled)
    settled_events = {e["payload"]["nonce"].lower(): e for e in events if e["event"] == PAYMENT_SETTLED}
    assert set(settled_events) == set(settled)
    for nonce, event in settled_events.items():
        assert event["payload"]["amount"] == settled[nonce].amount
        assert any(r["prefect.resource.role"] == "flow-run" for r in event["related"])
    # Each failed paid job the simulator injected was an event with its job id.
    failed_jobs = [e for e in events if e["event"] == JOB_FAILED]
    assert len(failed_jobs) >= sum(n for k, n in report.faults_injected.items() if k.endswith(":job_failure"))
    assert all(e["payload"]["job_id"] for e in failed_jobs)

    secrets = await _secrets_of(report.wallet_block)
    texts = [p.read_text() for p in book_dir.rglob("*.json")] + [out.read_text(), result.output]
    texts += [json.dumps(e) for e in events]
    for text in texts:
        for secret in secrets:
            assert secret not in text.lower()


async def _secrets_of(block_name: str) -> list[str]:
    """The soak wallet's key (read back from its block), with and without 0x, lowercase."""
    wallet = await StableStudioWallet.aload(block_name)
    key = wallet.private_key.get_secret_value().lower()
    return [key, key.removeprefix("0x")]


async def test_a_cap_refusal_and_a_policy_refusal_are_events_with_the_cap_and_what_remains(
    sim: Any, make_wallet: Callable[..., Any], tmp_path: Path
) -> None:
    await restart_events_worker()
    # The lifetime cap pays one upload ($0.01) and refuses the edit ($0.03); nothing is signed for it.
    name, wallet, key = await make_wallet(sim, max_usd_total="0.02")
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    capped = await edit_images(
        name, [EditItem(images=[str(image)])], str(tmp_path / "out"), prompt="snow",
        options=EditOptions(resolution="0.5 MP"), intent_store_url=str(tmp_path / "intents"),
        fail_on_error=False,
    )
    assert [o.status for o in capped.outcomes] == ["refused"]
    # The per-call cap ($0.005) refuses the upload itself: the policy, before any hook.
    strict_name, _, strict_key = await make_wallet(sim, max_usd_per_call="0.005")
    strict = await edit_images(
        strict_name, [EditItem(images=[str(image)])], str(tmp_path / "out2"), prompt="snow",
        intent_store_url=str(tmp_path / "intents"), fail_on_error=False,
    )
    assert [o.status for o in strict.outcomes] == ["refused"]

    wallet_id = f"stablestudio.wallet.{wallet.public_address.lower()}"
    (cap_event,) = await events_when(PAYMENT_REFUSED, wallet_id, lambda found: len(found) >= 1)
    payload = cap_event["payload"]
    assert payload["refused_by"] == "cap" and payload["cap"] == "lifetime"
    assert (payload["limit"], payload["asked"], payload["remaining"]) == (20_000, 30_000, 10_000)
    assert payload["remaining_usd"] == "0.01"
    assert cap_event["resource"]["stablestudio.wallet.block"] == name
    (settled,) = await events_when(PAYMENT_SETTLED, wallet_id, lambda found: len(found) >= 1)
    assert settled["payload"]["route"] == "upload"

    strict_id = f"stablestudio.wallet.{StableStudioWallet(private_key=strict_key).public_address.lower()}"
    (policy_event,) = await events_when(PAYMENT_REFUSED, strict_id, lambda found: len(found) >= 1)
    assert policy_event["payload"]["refused_by"] == "policy"
    for event in (cap_event, settled, policy_event):
        assert key.removeprefix("0x") not in json.dumps(event)
        assert strict_key.removeprefix("0x") not in json.dumps(event)
