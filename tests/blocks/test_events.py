"""`emit_spend_event`'s cheap path sends the events Prefect's own `emit_event` would: the same resource,
payload and related resources (flow run, flow, task run, tags), read back from the session's Prefect API;
and emitting never raises, whatever the payload.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import pytest
from prefect import flow, tags, task
from prefect.events import emit_event

from prefect_stablestudio.blocks import events as spend_events
from prefect_stablestudio.blocks.events import PAYMENT_SETTLED, emit_spend_event, wallet_resource
from tests.helpers.events import events_when, restart_events_worker

pytestmark = pytest.mark.usefixtures("prefect_api")


def _related(event: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((r["prefect.resource.id"], r["prefect.resource.role"]) for r in event["related"])


async def _until_related_known() -> None:
    """Until Prefect's worker has attached the run's resources to the first event of this run context (the
    cheap path starts there); a deadline, re-checking the shared state, no sleep standing in for it."""
    key = spend_events._run_key()
    deadline = time.monotonic() + 30
    while not ((first := spend_events._RELATED_OF.get(key)) is not None and first.related):
        assert time.monotonic() < deadline, "Prefect's events worker never related the first event"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_cheap_events_carry_what_prefects_emit_event_would() -> None:
    await restart_events_worker()
    address = "0x" + uuid.uuid4().hex[:8] + "ab" * 16
    sent: list[str] = []

    @task(name="spend-events-chunk")
    async def chunk(label: str) -> None:
        emit_spend_event(PAYMENT_SETTLED, address, "events-test", {"n": f"{label}-first"})  # via emit_event
        await _until_related_known()
        for i in range(5):  # the cheap path
            emit_spend_event(PAYMENT_SETTLED, address, "events-test", {"n": f"{label}-{i}", "amount": 30_000})
        # The reference: Prefect's own emit_event, same resource, same run context.
        emit_event(PAYMENT_SETTLED, resource=wallet_resource(address, "events-test"),
                   payload={"n": f"{label}-ref"})
        sent.extend([f"{label}-first", *(f"{label}-{i}" for i in range(5)), f"{label}-ref"])

    @flow(name="spend-events-flow")
    async def run() -> None:
        with tags("spend-events-tag"):
            await chunk("a")
            await chunk("b")  # another task run: its own task-run resource
        emit_spend_event(PAYMENT_SETTLED, address, "events-test", {"n": "flow-first"})
        await _until_related_known()
        emit_spend_event(PAYMENT_SETTLED, address, "events-test", {"n": "flow-0"})
        emit_event(PAYMENT_SETTLED, resource=wallet_resource(address, "events-test"),
                   payload={"n": "flow-ref"})
        sent.extend(["flow-first", "flow-0", "flow-ref"])

    await run()
    assert spend_events._worker is not None  # the cheap path ran (it looked the events worker up)
    resource_id = spend_events.wallet_resource_id(address)
    found = await events_when(PAYMENT_SETTLED, resource_id, lambda got: len(got) >= len(sent))
    by_n = {e["payload"]["n"]: e for e in found}
    assert sorted(by_n) == sorted(sent)  # one event each, none twice
    for label in ("a", "b"):
        reference = by_n[f"{label}-ref"]
        roles = {role for _, role in _related(reference)}
        assert {"flow-run", "flow", "task-run", "tag"} <= roles
        for n in (f"{label}-first", *(f"{label}-{i}" for i in range(5))):
            assert _related(by_n[n]) == _related(reference), n
            assert by_n[n]["resource"] == reference["resource"]
        assert by_n[f"{label}-0"]["payload"] == {"n": f"{label}-0", "amount": 30_000}
    assert _related(by_n["a-ref"]) != _related(by_n["b-ref"])  # each task run related as itself
    flow_roles = {role for _, role in _related(by_n["flow-ref"])}
    assert "task-run" not in flow_roles and "flow-run" in flow_roles
    assert _related(by_n["flow-0"]) == _related(by_n["flow-ref"])


def test_emitting_never_raises_whatever_the_payload() -> None:
    class Opaque:  # not JSON: serialising the event fails, in the cheap path and in emit_event alike
        pass

    emit_spend_event(PAYMENT_SETTLED, "0x" + "cd" * 20, None, {"x": Opaque()})
    emit_spend_event(PAYMENT_SETTLED, "0x" + "cd" * 20, None, {"big": "x" * 2_000_000})  # over the size limit


_EMIT_AND_EXIT = """
import asyncio, sys
from prefect import flow
from prefect_stablestudio.blocks.events import PAYMENT_SETTLED, emit_spend_event

@flow(name="spend-events-exit")
async def run() -> None:
    for i in range(20):
        emit_spend_event(PAYMENT_SETTLED, sys.argv[1], "events-test", {"n": i})
        await asyncio.sleep(0)

asyncio.run(run())
for i in range(20, 40):  # outside any run: the cheap path at once, held in a batch as the process exits
    emit_spend_event(PAYMENT_SETTLED, sys.argv[1], "events-test", {"n": i})
"""


@pytest.mark.timeout(180)
async def test_events_held_in_a_batch_are_sent_when_the_process_exits_right_after(prefect_api: str) -> None:
    # The process ends as soon as its flow returns: events still held (up to 0.2 s) must reach the API.
    address = "0x" + uuid.uuid4().hex[:8] + "ef" * 16
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _EMIT_AND_EXIT, address, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    resource_id = spend_events.wallet_resource_id(address)
    found = await events_when(PAYMENT_SETTLED, resource_id, lambda got: len(got) >= 40)
    assert sorted(e["payload"]["n"] for e in found) == list(range(40))
    in_flow = [e for e in found if e["payload"]["n"] < 20]
    assert all(any(r["prefect.resource.role"] == "flow-run" for r in e["related"]) for e in in_flow)
