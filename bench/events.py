"""`python -m bench.events [--payments N]`: the CPU a payment's event and receipt add to an edit.

Inside a flow run on a local Prefect API (the test harness, started here), it times N payments' worth of:
the settled event alone (`emit_spend_event`, including the events worker's thread draining it to the server:
`time.process_time` counts every thread), the receipt alone (a local receipts book), and both as the steps
record them (`PaymentRecorder`). An edit makes two payments (upload, edit), so the per-edit cost is twice the
per-payment figure; compare it with the ~10 ms of CPU an edit costs in `python -m bench` (README, Benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from eth_account import Account


def _payment(i: int) -> Any:
    from prefect_stablestudio.client.payment import Payment

    return Payment(
        header="not-a-real-signature", nonce=f"0x{i:064x}", amount=30_000, asset="0x" + "1" * 40,
        network="eip155:8453", pay_to="0x" + "2" * 40, payer="0x" + "3" * 40,
        resource_url="http://127.0.0.1:1/api/generate/flux-2-pro/edit", body_sha256="0" * 64,
        valid_before=2_000_000_000, signed_at=datetime.now(UTC),
    )


async def _measure(payments: int) -> dict[str, float]:
    from prefect import flow
    from prefect.events.worker import EventsWorker

    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.blocks.events import PAYMENT_SETTLED, emit_spend_event
    from prefect_stablestudio.client.payment import PaymentOutcome, Settlement
    from prefect_stablestudio.flows.receipts import PaymentRecorder, Receipt, ReceiptBook

    wallet = StableStudioWallet(private_key="0x" + bytes(Account.create().key).hex())
    settlement = Settlement(success=True, transaction="0x" + "a" * 64)
    outcome = PaymentOutcome(status="settled", settlement=settlement, response={"jobId": "job-1"})
    results: dict[str, float] = {}

    @flow(name="bench-spend-events")
    async def measure() -> None:
        with tempfile.TemporaryDirectory() as folder:
            book = ReceiptBook(folder)
            receipt = Receipt.of(_payment(0), outcome, wallet_block="bench", inputs=["s3://b/cat.png"])
            payload = receipt.event_payload()

            def drain() -> None:
                EventsWorker.drain_all()

            start = time.process_time()
            for _ in range(payments):
                emit_spend_event(PAYMENT_SETTLED, wallet.public_address, "bench", payload)
            await asyncio.to_thread(drain)
            results["event_ms"] = (time.process_time() - start) * 1000 / payments

            start = time.process_time()
            for i in range(payments):
                await book.append(receipt.model_copy(update={"nonce": f"0x{i:064x}"}))
            results["receipt_ms"] = (time.process_time() - start) * 1000 / payments

            recorder = PaymentRecorder(wallet, ReceiptBook(f"{folder}/both"), None)
            start = time.process_time()
            for i in range(payments):
                await recorder.after_outcome(_payment(i), outcome)
            await asyncio.to_thread(drain)
            results["both_ms"] = (time.process_time() - start) * 1000 / payments

    await measure()
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--payments", type=int, default=500)
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # its telemetry only locks SQLite here
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        results = asyncio.run(_measure(args.payments))
    print(f"{args.payments} payments, CPU per payment:")
    print(f"  settled event (built, queued, sent)   {results['event_ms']:.3f} ms")
    print(f"  receipt (one local object)            {results['receipt_ms']:.3f} ms")
    print(f"  both, as the steps record a payment   {results['both_ms']:.3f} ms")
    print(f"  per edit (2 payments: upload + edit)  {2 * results['both_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
