"""Prefect events about a wallet's money: every payment's fate, refusals, failed paid jobs, cap crossings.

People who run the plugin build alerts and reactions in Prefect from events and automations. Each fact is
emitted where it becomes known, once:

| event | when | emitted by |
| --- | --- | --- |
| `stablestudio.payment.settled` | the server took the money | `flows/receipts.py` (hooks) |
| `stablestudio.payment.unknown` | money may have moved: reconcile by nonce | `flows/receipts.py` (hooks) |
| `stablestudio.payment.refused` | policy or cap refused (nothing signed), or the server | `flows/steps.py` |
| `stablestudio.job.failed` | a paid job failed | `flows/steps.py` (its clients) |
| `stablestudio.cap.crossed` | a cap's count passed 50, 80 or 100 % | `blocks/budget.py` |

The resource is the wallet: `prefect.resource.id` is `stablestudio.wallet.<address, lowercase>`, labelled with
the block name (`stablestudio.wallet.block`); a cap crossing also carries `stablestudio.cap` (`run`, `day`,
`lifetime`) and `stablestudio.threshold` (`50`, `80`, `100`) as labels, so an automation can match them.
Prefect's events worker relates each event to the run it was emitted in (flow run, flow, deployment, work
pool, tags) from the run context, as it does for its own events. Payloads hold public facts only
(route, amounts, network, recipient, nonce, transaction, job id, cap and remaining): never the key, never the
signed authorization.

Emitting never fails the caller: `emit_spend_event` logs and swallows any error. Nor does it slow an edit
measurably (`python -m bench.events`: an edit's two events are ~2 % of the flow's CPU per edit in the same
run, where Prefect's `emit_event` alone would be ~6 %). `emit_event` validates each event, and its events
worker reads the run's resources from the run context again for every event and wakes once per event. Here
only the first event of each run context (flow run, task run) takes that path; later events reuse the related
resources the worker attached to it, are built without re-validating (every field is valid already:
`_send_prepared`) and reach the worker in batches held at most 0.2 s (`_Batch`), in emission order.

Example:
    ```python
    from prefect_stablestudio.blocks.events import PAYMENT_SETTLED, emit_spend_event

    emit_spend_event(PAYMENT_SETTLED, "0xAbC...", "my-wallet", {"route": "flux-2-pro/edit", "amount": 40000})
    ```
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.events import emit_event

from prefect_stablestudio.client.money import plain_dollars_from_atomic

__all__ = [
    "CAP_CROSSED",
    "CAP_LABELS",
    "CAP_THRESHOLDS",
    "EVENT_NAMES",
    "JOB_FAILED",
    "PAYMENT_REFUSED",
    "PAYMENT_SETTLED",
    "PAYMENT_UNKNOWN",
    "crossed_thresholds",
    "emit_spend_event",
    "money_fields",
    "wallet_resource",
    "wallet_resource_id",
]

PAYMENT_SETTLED = "stablestudio.payment.settled"
PAYMENT_REFUSED = "stablestudio.payment.refused"
PAYMENT_UNKNOWN = "stablestudio.payment.unknown"
JOB_FAILED = "stablestudio.job.failed"
CAP_CROSSED = "stablestudio.cap.crossed"
EVENT_NAMES = (PAYMENT_SETTLED, PAYMENT_REFUSED, PAYMENT_UNKNOWN, JOB_FAILED, CAP_CROSSED)

CAP_THRESHOLDS = (50, 80, 100)
"""Percentages of a cap whose crossing is an event."""

CAP_LABELS = {"per flow run": "run", "rolling 24 h": "day", "lifetime": "lifetime", "per call": "call"}
"""The `stablestudio.cap` label of each cap (labels are matched by automations: short and stable)."""

_log = logging.getLogger("prefect_stablestudio.events")

if TYPE_CHECKING:
    from prefect.events import Event

RunKey = tuple[UUID | None, UUID | None]
"""(flow run id, task run id) of the run context an event is emitted in: the resources Prefect relates."""

_RELATED_OF: dict[RunKey, Event] = {}
"""Per run context, the first event emitted there through `emit_event`; once Prefect's events worker has
attached the run's related resources to it, later events of that context reuse them."""

_RELATED_OF_MAX = 256
_RELATED_OF_LOCK = threading.Lock()


def wallet_resource_id(address: str) -> str:
    """`stablestudio.wallet.<address>` (lowercase: one wallet, one id, however it was spelled).

    Example:
        >>> wallet_resource_id("0xAbC")
        'stablestudio.wallet.0xabc'
    """
    return f"stablestudio.wallet.{address.lower()}"


def wallet_resource(address: str, block_name: str | None, **labels: str) -> dict[str, str]:
    """The wallet as an event's resource: its id, its block name as a label, and `labels`.

    Example:
        >>> wallet_resource("0xAbC", "night-wallet")["stablestudio.wallet.block"]
        'night-wallet'
    """
    return {
        "prefect.resource.id": wallet_resource_id(address),
        "prefect.resource.name": block_name or address,
        "stablestudio.wallet.address": address,
        "stablestudio.wallet.block": block_name or "",
        **labels,
    }


def money_fields(amount: int) -> dict[str, Any]:
    """`amount` (atomic units) and `amount_usd` (a decimal string, never a float).

    Example:
        >>> money_fields(40_000)
        {'amount': 40000, 'amount_usd': '0.04'}
    """
    return {"amount": amount, "amount_usd": plain_dollars_from_atomic(amount)}


def crossed_thresholds(limit: int, before: int, after: int) -> list[int]:
    """The percentages of `CAP_THRESHOLDS` that a count going from `before` to `after` passed (or reached).

    Example:
        >>> crossed_thresholds(1_000_000, 400_000, 850_000)
        [50, 80]
        >>> crossed_thresholds(1_000_000, 850_000, 900_000)
        []
    """
    if limit <= 0 or after <= before:
        return []
    # Integer arithmetic: pct of limit reached when count * 100 >= pct * limit.
    return [p for p in CAP_THRESHOLDS if before * 100 < p * limit <= after * 100]


def emit_spend_event(
    name: str,
    address: str,
    block_name: str | None,
    payload: dict[str, Any],
    *,
    labels: dict[str, str] | None = None,
) -> None:
    """Emit one event about the wallet `address`; never raises (a failure is logged at WARNING).

    The event is the one `prefect.events.emit_event` would send (same resource, related resources, payload);
    after the first event of a run context it is built and queued in a fraction of the CPU (module docstring).

    Args:
        name: one of `EVENT_NAMES`.
        address: the wallet's public address (the resource).
        block_name: the wallet block's name, if it was loaded from one.
        payload: public facts only (the callers in this package never put a key or a signature here).
        labels: extra resource labels (a cap crossing's cap and threshold).
    """
    try:
        resource = wallet_resource(address, block_name, **(labels or {}))
        key = _run_key()
        template = _RELATED_OF.get(key)
        related: list[Any] | None = None
        if key == (None, None):
            related = []  # no run context: Prefect's worker relates nothing either
        elif template is not None and template.related:  # the worker has attached the run's resources
            related = list(template.related)
        if related is not None and _send_prepared(name, resource, payload, related):
            return
        _BATCH.flush()  # what waits there was emitted first: it is queued first
        event = emit_event(name, resource=resource, payload=payload)
        if event is not None and template is None and key != (None, None):
            with _RELATED_OF_LOCK:
                if len(_RELATED_OF) >= _RELATED_OF_MAX:
                    _RELATED_OF.pop(next(iter(_RELATED_OF)), None)  # the oldest run context
                _RELATED_OF.setdefault(key, event)
    except Exception as exc:  # an event is a report: it never fails the payment or the edit it reports
        _log.warning("event %s not emitted: %s", name, type(exc).__name__)


def _run_key() -> RunKey:
    """The flow run and task run an event emitted now belongs to, as Prefect's events worker reads them."""
    from prefect.context import FlowRunContext, TaskRunContext

    flow_context, task_context = FlowRunContext.get(), TaskRunContext.get()
    task_run = task_context.task_run if task_context is not None else None
    flow_run = flow_context.flow_run if flow_context is not None else None
    if flow_run is not None:
        return flow_run.id, task_run.id if task_run is not None else None
    return (task_run.flow_run_id, task_run.id) if task_run is not None else (None, None)


_worker: tuple[Any, Any, Any] | None = None
"""What `_send_prepared` last looked up: (settings, client override, events worker)."""


def _send_prepared(name: str, resource: dict[str, str], payload: dict[str, Any], related: list[Any]) -> bool:
    """Queue the event `emit_event` would send, with its `related` resources already attached; False when
    it cannot (the caller then calls `emit_event`, which also deals with an event too large to send).

    This reaches into Prefect's events internals, checked against prefect 3.8.8 and 3.9.1 (their
    `prefect/events/utilities.py`, `worker.py`, `related.py` and `schemas/events.py` are identical):
    - `emit_event` validates a new `Event` (its datetime validation alone costs more than the rest) and reads
      several settings per call. Every field here is valid already (the resource is `wallet_resource`'s;
      `related` is what Prefect's worker attached to an earlier event of the same run context), so the event
      is built with `Event.model_construct`; the size limit is checked, as `emit_event` does.
    - `EventsWorker.send` copies the caller's context, and the worker then reads the flow run, flow,
      deployment, work queue, work pool and tags from it again for every event (several tasks on its loop).
      Sent from a context where no flow run or task run is set (not merely unset: the worker's own context
      may hold the run that started it), the worker finds no run and adds nothing: the event keeps exactly
      the related resources it would have attached.
    - The worker is looked up once per settings object and client override (`emit_event` does it on every
      call), and again once it has stopped (its `_stopped`).
    - The event then waits in `_BATCH` (at most 0.2 s), which queues it on the worker with the events of the
      same moments.
    Anything else unexpected (an attribute renamed, a type that no longer constructs) returns False.
    """
    global _worker
    try:
        parts = _prefect_parts()
        settings, override = parts.get_current_settings(), parts.EventsWorker._client_override
        cached = _worker
        if cached is None or cached[0] is not settings or cached[1] is not override or cached[2]._stopped:
            if not parts.should_emit_events():
                return False  # emit_event decides (it sends nothing)
            cached = _worker = (settings, override, parts.EventsWorker.instance())
            _BATCH.flush_before(cached[2])
        worker = cached[2]
        if worker.client_type not in parts.operational:  # as emit_event: no event for a null client
            return False
        # Every field given: pydantic would inspect the default factories on each call.
        event = parts.Event.model_construct(
            occurred=datetime.now(UTC),  # serialised as Prefect's own DateTime is (ISO 8601, UTC)
            event=name, resource=parts.Resource.model_construct(root=resource),
            related=related, payload=payload, id=parts.uuid7(), follows=None,
        )
        if event.size_bytes > settings.server.events.maximum_size_bytes:
            return False
        _BATCH.add(worker, event, contextvars.copy_context())
        return True
    except Exception as exc:
        _log.debug("prepared event not sent (%s); emit_event instead", type(exc).__name__)
        return False


class _Batch:
    """Prepared events held for up to `WINDOW` seconds, then queued on Prefect's events worker together.

    Queued one at a time, each event wakes the worker's loop through its queue thread (about 0.5 ms of CPU per
    wake-up, more than building and sending the event); queued together, they wake it once. A thread of its
    own sends them: nothing waits on the caller's event loop, which may close first. Before Prefect's worker
    drains at interpreter exit, the batch is flushed into it (`flush_before`: an exit callback registered
    after each worker's own, so it runs first). Events are delayed by at most `WINDOW`.
    """

    WINDOW = 0.2

    def __init__(self) -> None:
        self._items: list[tuple[Any, Any, contextvars.Context]] = []
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered_for: Any = None

    def add(self, worker: Any, event: Any, context: contextvars.Context) -> None:
        """Hold `event` for `worker`; `context` (the caller's) looks the worker up again if it has stopped."""
        with self._lock:
            self._items.append((worker, event, context))
            first = len(self._items) == 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="StableStudioEventsBatch", daemon=True)
                self._thread.start()
        if first:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.WINDOW)  # the events of the next moments join this batch
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Queue every held event now, in order, and return once they are queued (never raises: an event that
        cannot be queued is logged). An event sent any other way after this call is queued after them."""
        with self._sending:  # also waits for a flush under way on the batch's thread
            with self._lock:
                items, self._items = self._items, []
            self._send(items)

    def _send(self, items: list[tuple[Any, Any, contextvars.Context]]) -> None:
        for worker, event, context in items:
            try:
                try:
                    contextvars.Context().run(_send_outside_runs, worker, event)
                except RuntimeError:  # the worker stopped meanwhile: the caller's current one
                    current = context.run(_prefect_parts().EventsWorker.instance)
                    contextvars.Context().run(_send_outside_runs, current, event)
            except Exception as exc:
                _log.warning("event %s not emitted: %s", event.event, type(exc).__name__)

    def flush_before(self, worker: Any) -> None:
        """Flush at interpreter exit before `worker` drains: Prefect's services register their drain with
        CPython's `threading._register_atexit` when they start, and CPython runs the later registration first,
        so this registers once more after each new worker (without that hook, nothing is registered)."""
        register = getattr(threading, "_register_atexit", None)
        if register is not None and worker is not self._registered_for:
            register(self.flush)
            self._registered_for = worker

    def reset_after_fork(self) -> None:
        """In a forked child: no thread, nothing held (the parent sends its own)."""
        self._items, self._lock, self._sending = [], threading.Lock(), threading.Lock()
        self._wake, self._thread = threading.Event(), None


_BATCH = _Batch()
os.register_at_fork(after_in_child=_BATCH.reset_after_fork)


def _send_outside_runs(worker: Any, event: Any) -> None:
    """`worker.send(event)` with no flow run or task run in the context it copies (run in a fresh Context)."""
    parts = _prefect_parts()
    parts.FlowRunContext.__var__.set(None)
    parts.TaskRunContext.__var__.set(None)
    worker.send(event)


@functools.cache
def _prefect_parts() -> Any:
    """What `_send_prepared` uses of Prefect, imported once (an import that fails fails `_send_prepared`)."""
    from prefect._internal.uuid7 import uuid7
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events import Event
    from prefect.events.clients import (
        AssertingEventsClient,
        AssertingPassthroughEventsClient,
        PrefectCloudEventsClient,
        PrefectEventsClient,
    )
    from prefect.events.schemas.events import Resource
    from prefect.events.worker import EventsWorker, ProcessPoolForwardingEventsClient, should_emit_events
    from prefect.settings import get_current_settings

    operational = (AssertingPassthroughEventsClient, AssertingEventsClient, PrefectCloudEventsClient,
                   PrefectEventsClient, ProcessPoolForwardingEventsClient)
    return SimpleNamespace(
        uuid7=uuid7, FlowRunContext=FlowRunContext, TaskRunContext=TaskRunContext, Event=Event,
        Resource=Resource, EventsWorker=EventsWorker, should_emit_events=should_emit_events,
        get_current_settings=get_current_settings, operational=operational,
    )
