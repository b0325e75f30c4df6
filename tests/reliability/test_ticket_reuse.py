"""A paid upload ticket is spent once: kept before its PUT, reused by a retry, a rerun or a run after kill -9.

Evidence is the simulator's ledger (settled payments per route) and the intent store's upload records.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.client import StableStudioClient, UpstreamError
from prefect_stablestudio.client.models import UploadTicket
from prefect_stablestudio.client.payment import Payment
from prefect_stablestudio.flows import BatchResult, IntentStore, PaymentIntent, edit_image, edit_images
from prefect_stablestudio.simulator import FaultRule
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

ROOT = Path(__file__).resolve().parents[2]
# Every attempt of one upload's PUT (the client tries five times) fails with a 500.
FAILING_PUTS = FaultRule(route="blob-put", kind="http_5xx", nth=(1, 2, 3, 4, 5))


def studio(sim: Any, key: str) -> StableStudioClient:
    return StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url)


async def test_a_retry_after_a_failed_put_uses_the_ticket_it_paid_for(make_sim: Any, key: str) -> None:
    sim = make_sim(faults=(FAILING_PUTS,))
    kept: list[tuple[UploadTicket, Payment | None]] = []

    async def keep(ticket: UploadTicket, payment: Payment | None) -> None:
        assert sim.state()["counters"]["requests"].get("PUT /api/blob", 0) == 0  # kept before its PUT
        kept.append((ticket, payment))

    async with studio(sim, key) as client:
        with pytest.raises(UpstreamError):
            await client.upload_detailed(png_bytes(), on_ticket=keep)
        ((ticket, payment),) = kept
        result = await client.upload_detailed(png_bytes(), ticket=ticket, on_ticket=keep)
    assert result.ticket_reused and result.payments == () and result.rebought_because is None
    assert len(kept) == 1 and result.upload_id == ticket.upload_id
    (paid,) = payments(sim, client.address, UPLOAD_ROUTE)
    assert payment is not None and paid["nonce"].lower() == payment.nonce.lower()


async def test_a_refused_ticket_is_replaced_and_the_second_fee_is_reported(sim: Any, key: str) -> None:
    kept: list[UploadTicket] = []

    async def keep(ticket: UploadTicket, payment: Payment | None) -> None:
        kept.append(ticket)

    async with studio(sim, key) as client:
        await client.upload_detailed(png_bytes(), on_ticket=keep)
        forged = kept[0].model_copy(update={"client_token": kept[0].client_token[:-8] + "AAAAAAAA"})
        result = await client.upload_detailed(png_bytes(), ticket=forged, on_ticket=keep)
    assert not result.ticket_reused and len(result.payments) == 1 and result.rebought_because == "refused"
    assert len(kept) == 2 and len(payments(sim, client.address, UPLOAD_ROUTE)) == 2


def test_a_tickets_validity_is_read_from_its_token(sim: Any, key: str) -> None:
    async def buy() -> UploadTicket:
        kept: list[UploadTicket] = []

        async def keep(ticket: UploadTicket, payment: Payment | None) -> None:
            kept.append(ticket)

        async with studio(sim, key) as client:
            await client.upload_detailed(png_bytes(), on_ticket=keep)
        return kept[0]

    ticket = asyncio.run(buy())
    assert abs((ticket.valid_until - ticket.expires_at).total_seconds()) < 1.0  # the simulator agrees
    later = ticket.model_copy(update={"expires_at": ticket.expires_at.replace(year=2100)})
    assert later.valid_until == ticket.valid_until  # the token's validUntil bounds it


async def _batch(name: str, tmp_path: Path, image: Path) -> BatchResult:
    return await edit_images(
        name, [str(image)], str(tmp_path / "out"), prompt="a fox in snow",
        intent_store_url=str(tmp_path / "intents"), expected_job_seconds=0.2, fail_on_error=False,
    )


def _upload_records(tmp_path: Path) -> list[PaymentIntent]:
    folder = tmp_path / "intents" / "uploads"
    store = IntentStore(str(folder))
    return [r for p in folder.glob("*.json") if (r := asyncio.run(store.get(p.stem))) is not None]


@pytest.mark.usefixtures("prefect_api")
async def test_a_rerun_after_a_failed_put_pays_one_upload_fee_in_all(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim(faults=(FAILING_PUTS,))
    name, wallet, _ = await make_wallet(sim)
    image = tmp_path / "fox.png"
    image.write_bytes(png_bytes((9, 8, 7)))

    first = await _batch(name, tmp_path, image)
    assert first.outcomes[0].status != "complete"
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1
    second = await _batch(name, tmp_path, image)

    assert second.outcomes[0].status == "complete" and second.outcomes[0].upload_cost_usd == 0
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1  # the ticket was reused
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 1
    (record,) = await asyncio.to_thread(_upload_records, tmp_path)
    assert record.status == "complete" and record.tickets_bought == 1


@pytest.mark.usefixtures("prefect_api")
async def test_a_rerun_after_the_ticket_expired_buys_one_more_and_reports_it(
    make_sim: Any, make_wallet: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Tokens live 6 s: the first run's five PUT attempts (~5 s of backoff) outlast the client's 3 s margin.
    sim = make_sim(faults=(FAILING_PUTS,), upload_token_ttl_seconds=6)
    name, wallet, _ = await make_wallet(sim)
    image = tmp_path / "fox.png"
    image.write_bytes(png_bytes((1, 2, 3)))

    first = await _batch(name, tmp_path, image)
    assert first.outcomes[0].status != "complete"
    second = await _batch(name, tmp_path, image)

    assert second.outcomes[0].status == "complete"
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 2
    (record,) = await asyncio.to_thread(_upload_records, tmp_path)
    assert record.tickets_bought == 2 and record.status == "complete"
    assert any("bought a further ticket" in r.message and "had expired" in r.message for r in caplog.records)


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.timeout(180)
async def test_kill_9_between_the_ticket_and_the_put_then_a_rerun_pays_one_upload_fee(
    make_sim: Any, make_wallet: Any, prefect_api: str, tmp_path: Path
) -> None:
    # The first PUT is held for a minute: the process dies with the ticket paid and kept, the PUT unfinished.
    sim = make_sim(faults=(FaultRule(route="blob-put", kind="slow", nth=(1,), delay=60.0),))
    name, wallet, _ = await make_wallet(sim)
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    store_dir = tmp_path / "intents"
    kwargs = {
        "wallet_block": name, "image": str(image), "prompt": "make it snow",
        "destination": str(tmp_path / "out"), "intent_store_url": str(store_dir),
    }
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", json.dumps(kwargs)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(6000):
            records = await asyncio.to_thread(_upload_records, tmp_path)
            held = sim.state()["counters"]["faults_injected"].get("blob-put:slow") == 1
            if held and records and records[0].status == "submitted" and records[0].ticket is not None:
                break
            if child.poll() is not None:
                out = child.stdout.read().decode(errors="replace") if child.stdout else ""
                raise AssertionError(f"the flow process ended (rc {child.returncode}) first:\n{out[-3000:]}")
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the ticket was never kept with its PUT in flight")
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        if child.stdout:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1

    outcome = await edit_image(**kwargs)

    assert outcome.status == "complete" and outcome.upload_cost_usd == 0
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1  # one upload payment in all
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 1
    assert outcome.output_uri and Path(outcome.output_uri).read_bytes()
