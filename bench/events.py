"""`python -m bench.events [--payments N] [--edits N]`: the CPU a payment's event and receipt add to an edit.

One run, one Prefect API server (its own process, as in `python -m bench`), two fresh worker processes:
- the flow: `edit_images` over `--edits` edits against the simulator (`bench.worker`'s `flow` mode: caps on,
  INFO logs sent to the API, events and receipts included): the flow's own CPU per edit;
- the emission: inside a flow run and a task run (as the steps emit), `--payments` payments' worth of the
  settled event through `emit_spend_event`, then through Prefect's own `emit_event` (what it cost before the
  cheap path; the same event), the receipt alone, and both as the steps record a payment (`PaymentRecorder`).
  CPU is `time.process_time` (every thread, so Prefect's events worker sending them is counted); each figure
  waits until the worker has sent everything. Payments come one at a time, `--spacing` apart, as in a flow
  (back to back, Prefect's worker would take them in one wake-up, which flatters it); the CPU of the same loop
  with nothing to record in it is subtracted.

An edit makes two payments (upload, edit); the report gives the per-edit cost of emission as a share of the
flow's per-edit CPU measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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


async def _measure_emission(payments: int, spacing: float) -> dict[str, float]:
    """Per payment, ms of CPU (all threads) for each way of recording it; in a task run of a flow run."""
    from prefect import flow, task
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.blocks.events import PAYMENT_SETTLED, emit_spend_event, wallet_resource
    from prefect_stablestudio.client.payment import PaymentOutcome, Settlement
    from prefect_stablestudio.flows.receipts import PaymentRecorder, Receipt, ReceiptBook

    wallet = StableStudioWallet(private_key="0x" + bytes(Account.create().key).hex())
    settlement = Settlement(success=True, transaction="0x" + "a" * 64)
    outcome = PaymentOutcome(status="settled", settlement=settlement, response={"jobId": "job-1"})
    results: dict[str, float] = {}

    async def timed(what: str, one: Callable[[int], Awaitable[None]]) -> None:
        gc.collect()  # a collection the previous phase left due is not this phase's cost
        start = time.process_time()
        for i in range(payments):
            await one(i)
            await asyncio.sleep(spacing)
        await asyncio.sleep(0.5)  # the last batch of `emit_spend_event` (held up to 0.2 s) queued
        await asyncio.to_thread(EventsWorker.instance().wait_until_empty)  # sent, not merely queued
        results[what] = (time.process_time() - start) * 1000 / payments - results.get("idle", 0.0)

    @task(name="bench-spend-events-chunk")
    async def chunk() -> None:
        with tempfile.TemporaryDirectory() as folder:
            book = ReceiptBook(folder)
            receipt = Receipt.of(_payment(0), outcome, wallet_block="bench", inputs=["s3://b/cat.png"])
            payload = receipt.event_payload()
            resource = wallet_resource(wallet.public_address, "bench")

            async def idle(i: int) -> None:
                pass

            async def cheap(i: int) -> None:
                emit_spend_event(PAYMENT_SETTLED, wallet.public_address, "bench", payload)

            async def prefects(i: int) -> None:
                emit_event(PAYMENT_SETTLED, resource=resource, payload=payload)

            async def receipt_only(i: int) -> None:
                await book.append(receipt.model_copy(update={"nonce": f"0x{i:064x}"}))

            recorder = PaymentRecorder(wallet, ReceiptBook(f"{folder}/both"), None)

            async def both(i: int) -> None:
                await recorder.after_outcome(_payment(i), outcome)

            # Warm: the events worker started, the run's related resources known, lazy imports done.
            await timed("warm", cheap)
            await timed("warm", prefects)
            await timed("idle", idle)
            await timed("event_ms", cheap)
            await timed("prefect_event_ms", prefects)
            await timed("receipt_ms", receipt_only)
            await timed("both_ms", both)
            results.pop("warm")
            results.pop("idle")

    @flow(name="bench-spend-events")
    async def measure() -> None:
        await chunk()

    await measure()
    return results


def _emission_in_worker(payments: int, spacing: float, env: dict[str, str]) -> dict[str, float]:
    """`_measure_emission` in a fresh process on the run's Prefect API; its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.events", "--emission-only", "--payments", str(payments),
         "--spacing", str(spacing)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"emission measurement failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


def run(payments: int, spacing: float, edits: int, concurrency: int, latency: float) -> dict[str, Any]:
    """The flow's CPU per edit and the emission's per payment, on one Prefect API; the JSON-ready result."""
    from bench.procs import prefect_server, run_worker, simulator_process

    with tempfile.TemporaryDirectory(prefix="stablestudio-bench-events-") as workdir:
        with (
            prefect_server(os.path.join(workdir, "prefect-home")) as prefect,
            simulator_process(latency, 0.0) as sim,
            simulator_process(0.1, 0.0, seed=1) as fast,
        ):
            env = prefect.ready()
            spec = {
                "mode": "flow", "base_url": sim.base_url, "blob_api_url": sim.blob_api_url,
                "sim_pid": sim.pid,
                "warmup_base_url": fast.base_url, "warmup_blob_api_url": fast.blob_api_url,
                "points": [(edits, concurrency)], "latency": latency, "prefect_pid": prefect.pid,
            }
            (point,) = run_worker(spec, env=env)["points"]
            emission = _emission_in_worker(payments, spacing, env)
    flow_ms = point["cpu_s"] / point["edits"] * 1000
    per_edit = {k.removesuffix("_ms"): 2 * v for k, v in emission.items()}
    return {
        "payments": payments, "spacing": spacing,
        "edits": edits, "concurrency": concurrency, "latency": latency,
        "flow_cpu_ms_per_edit": flow_ms, "per_payment_ms": emission, "per_edit_ms": per_edit,
        "share_of_flow": {k: v / flow_ms for k, v in per_edit.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--spacing", type=float, default=0.002, help="seconds between payments")
    parser.add_argument("--edits", type=int, default=100, help="edits of the flow run measured")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=1.0, help="the simulator's job seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--emission-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.emission_only:  # the worker process of `_emission_in_worker`
        print(json.dumps(asyncio.run(_measure_emission(args.payments, args.spacing))))
        return 0
    result = run(args.payments, args.spacing, args.edits, args.concurrency, args.latency)
    if args.json:
        print(json.dumps(result))
        return 0
    flow_ms, share = result["flow_cpu_ms_per_edit"], result["share_of_flow"]
    rows = [
        ("settled event, emit_spend_event", "event"),
        ("settled event, Prefect's emit_event", "prefect_event"),
        ("receipt (one local object)", "receipt"),
        ("event + receipt, as the steps record", "both"),
    ]
    print(f"flow: {args.edits} edits ({args.concurrency} at once): {flow_ms:.2f} ms of CPU per edit")
    print(f"{args.payments} payments {1000 * args.spacing:g} ms apart, CPU (all threads):")
    print(f"  {'':<38} per payment   per edit (x2)   share of the flow's")
    for label, key in rows:
        per_payment = result["per_payment_ms"][f"{key}_ms"]
        print(f"  {label:<38} {per_payment:8.3f} ms   {2 * per_payment:8.3f} ms   {100 * share[key]:6.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
