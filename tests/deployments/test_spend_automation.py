"""Spend events and the spend automation on a real `prefect server start` (the helpers of test_end_to_end).

A batch of 4 edits (8 payments: 4 uploads, 4 edits, $0.16) on a wallet whose day cap is $0.18:
- every payment's `stablestudio.payment.settled` event is read back through the server's events API, with
  its payload (route, amounts, network, transaction, job id, flow run) and the wallet as its resource;
- the day cap passes 80 %, so the automation `deployments/automations.py` creates fires on the server: the
  `scheduled-edits` deployment ends up paused and the notification block posts to a webhook receiver on
  127.0.0.1 that counts the calls. Everything is polled with a deadline.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client

from deployments.automations import AUTOMATION_NAME, DEPLOYMENT, create_spend_automation
from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.events import CAP_CROSSED, PAYMENT_SETTLED
from prefect_stablestudio.flows import EditItem, EditOptions, edit_images
from tests.helpers.events import events_when, read_events, restart_events_worker
from tests.helpers.ledger import payments, png_bytes
from tests.helpers.prefect_processes import pause, run_prefect, save_wallet

pytestmark = pytest.mark.slow
DEADLINE_SECONDS = 60.0


class Receiver:
    """A webhook receiver on 127.0.0.1: counts the POSTs and keeps their bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers.get("content-length", 0))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.http.shutdown()
        hook.http.server_close()


@pytest.fixture
async def events_to_this_server(on_server: str) -> AsyncIterator[None]:
    """Events go to this module's server during the test, and to whatever API comes next after it."""
    await restart_events_worker()
    try:
        yield
    finally:
        await restart_events_worker()


async def _until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {DEADLINE_SECONDS} s: {what}"
        await pause(0.5)  # polling a condition with a deadline, not timing a result


async def test_a_batch_emits_settled_events_and_the_day_cap_automation_pauses_and_notifies(
    server: tuple[str, dict[str, str]],
    events_to_this_server: None,
    make_sim: Callable[..., Any],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    _, env = server
    sim = make_sim()
    wallet_name, address = await save_wallet(sim, max_usd_per_day="0.18")
    deploy_env = env | {
        "STABLESTUDIO_WALLET": wallet_name,
        "STABLESTUDIO_SOURCE_PREFIX": str(tmp_path / "in"),
        "STABLESTUDIO_DEST_PREFIX": str(tmp_path / "out"),
        "STABLESTUDIO_PROMPT": "make it autumn",
    }
    run_prefect(["work-pool", "create", "stablestudio", "--type", "process", "--overwrite"], env)
    run_prefect(["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], deploy_env)
    notify = f"spend-alerts-{uuid.uuid4().hex[:8]}"
    await CustomWebhookNotificationBlock(
        name="spend alerts", url=receiver.url, method="POST",
        json_data={"text": "{{subject}}: {{body}}"}, allow_private_urls=True,
    ).save(notify, overwrite=True)
    automation = await create_spend_automation(
        notify=f"custom-webhook/{notify}", wallet_block=wallet_name
    )
    assert automation.name == AUTOMATION_NAME
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        assert not deployment.paused

    images = []
    for i in range(4):
        path = tmp_path / "in" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(png_bytes((40 * i, 90, 200)))
        images.append(EditItem(images=[str(path)]))
    result = await edit_images(
        wallet_name, images, str(tmp_path / "out"), prompt="make it autumn",
        options=EditOptions(resolution="0.5 MP"), intent_store_url=str(tmp_path / "intents"),
    )
    assert len(result.succeeded) == 4
    ledger = payments(sim, address)
    assert len(ledger) == 8 and sum(p["amount"] for p in ledger) == 160_000

    # One settled event per payment, read back from the server, with the payment's facts.
    wallet_id = f"stablestudio.wallet.{address.lower()}"

    settled = await events_when(PAYMENT_SETTLED, wallet_id, lambda found: len(found) >= len(ledger))
    by_nonce = {e["payload"]["nonce"].lower(): e for e in settled}
    assert len(settled) == len(by_nonce) == 8
    for paid in ledger:
        event = by_nonce[paid["nonce"].lower()]
        payload = event["payload"]
        assert payload["amount"] == paid["amount"] and payload["route"] == paid["route"]
        assert payload["transaction"] == paid["transaction"] and payload["network"] == "eip155:8453"
        assert payload["amount_usd"] in ("0.01", "0.03")
        assert (payload["job_id"] is not None) == (paid["route"] != "upload")
        assert event["resource"]["stablestudio.wallet.block"] == wallet_name
        assert any(r["prefect.resource.role"] == "flow-run" for r in event["related"])

    crossings = await read_events(CAP_CROSSED, wallet_id)
    crossed = {
        (e["resource"]["stablestudio.cap"], e["resource"]["stablestudio.threshold"])
        for e in crossings
    }
    assert crossed >= {("day", "50"), ("day", "80")}

    # The automation acted on the server: the deployment is paused, the webhook was called.
    async def paused() -> bool:
        async with get_client() as client:
            return bool((await client.read_deployment_by_name(DEPLOYMENT)).paused)

    await _until("scheduled-edits paused", paused)

    async def notified() -> int:
        return len(receiver.bodies)

    await _until("the webhook called", notified)
    assert b"day cap" in receiver.bodies[0]
    key = (await StableStudioWallet.aload(wallet_name)).private_key.get_secret_value().lower()
    for text in [str(settled), str(crossings), *(b.decode() for b in receiver.bodies)]:
        assert key.removeprefix("0x") not in text.lower()

