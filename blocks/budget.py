"""Spend caps held by Prefect's server: global concurrency limits used as token buckets in micro-USDC.

Why the server and not memory: tasks of one flow run may execute in threads, in other processes (Dask, Ray,
process pools) or on other workers, and two of them must never both spend the last dollar. Prefect's
`/v2/concurrency_limits/increment` endpoint checks and increments every named limit in one conditional SQL
UPDATE and rolls back unless all rows matched (docs/decisions.md, "Spend caps"), so a reservation over
several caps is all-or-nothing.

Each cap is one limit whose slots are micro-USDC (1 slot = $0.000001):

| cap | limit name | slots | decay per second |
| --- | --- | --- | --- |
| per flow run | `stablestudio-<address>-run-<flow run id>` | cap | 1e-9 (never, in practice) |
| rolling 24 h | `stablestudio-<address>-day` | cap | cap / 86400 |
| lifetime | `stablestudio-<address>-total` | cap | 1e-9 (never, in practice) |

Rate-limit mode refuses limits without decay, hence the 1e-9 "never" decay; Prefect floors the decay at every
update (docs/decisions.md), so the count only ever errs towards more spend, never less. The address (public)
names the limits: two wallets that differ only by key would otherwise be indistinguishable. Deleting a limit
resets that cap's spend.

Two speed tricks live in modules of their own: a run's float (`run_float.py`) and the increment retried in
milliseconds (`prefect_http.py`). `SpendBudget._take` is the all-or-nothing check itself.

Where the caps hold: against a Prefect server (self-hosted or Cloud), across every process and machine that
talks to it. In ephemeral mode (no PREFECT_API_URL) Prefect runs a local server on the SQLite database under
PREFECT_HOME: caps then hold across the processes of one machine sharing that PREFECT_HOME, not across
machines.

Example:
    ```python
    from prefect_stablestudio.blocks.budget import SpendBudget

    budget = SpendBudget("0xAbC...", per_day=5_000_000, lifetime=50_000_000)
    await budget.reserve(40_000)      # $0.04, or SpendCapExceeded naming the cap
    ```
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_API_URL

from prefect_stablestudio.blocks.events import (
    CAP_CROSSED,
    CAP_LABELS,
    crossed_thresholds,
    emit_spend_event,
)
from prefect_stablestudio.blocks.prefect_http import increment_caps
from prefect_stablestudio.blocks.run_float import FLOATS, RUN_FLOAT, FloatKey
from prefect_stablestudio.client.errors import BudgetExceeded
from prefect_stablestudio.client.money import plain_dollars_from_atomic, usd_exact_from_atomic

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, State
    from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
    from prefect.flows import Flow


__all__ = [
    "NEVER_DECAY",
    "CapLimit",
    "CapName",
    "SpendBudget",
    "SpendCapExceeded",
    "current_flow_run_id",
    "day_limit_name",
    "release_run_budget",
    "run_limit_name",
    "total_limit_name",
]

CapName = Literal["per call", "per flow run", "rolling 24 h", "lifetime"]

NEVER_DECAY = 1e-9
"""Decay for caps that must not replenish (rate-limit mode refuses a decay of exactly 0)."""

_DAY_SECONDS = 86_400

# Limits this process has created or aligned: (API URL, name, size, decay). A budget is built per client, that
# is per task, and checking its limits again before every payment cost two reads per payment.
_ENSURED: set[tuple[str, str, int, float]] = set()

_PREFIX = "stablestudio-"


def day_limit_name(address: str) -> str:
    """Name of the rolling 24 h limit of a wallet."""
    return f"{_PREFIX}{address.lower()}-day"


def total_limit_name(address: str) -> str:
    """Name of the lifetime limit of a wallet."""
    return f"{_PREFIX}{address.lower()}-total"


def run_limit_name(address: str, flow_run_id: str) -> str:
    """Name of the per-flow-run limit of a wallet."""
    return f"{_PREFIX}{address.lower()}-run-{flow_run_id}"


class SpendCapExceeded(BudgetExceeded):
    """A spend cap would be exceeded; nothing was signed.

    Attributes:
        cap_name: which cap refused ("per flow run", "rolling 24 h", "lifetime").
        cap: the cap, atomic units.
        asked: what the call would cost, atomic units.
        remaining: what is left under the cap, atomic units.
        address: the wallet (public).
    """

    def __init__(self, *, cap_name: CapName, cap: int, asked: int, remaining: int, address: str) -> None:
        super().__init__(
            f"{cap_name} cap of {usd_exact_from_atomic(cap)} for wallet {address} would be exceeded: "
            f"asked {usd_exact_from_atomic(asked)}, remaining {usd_exact_from_atomic(remaining)}",
            cap=cap,
            asked=asked,
            remaining=remaining,
        )
        self.cap_name: CapName = cap_name
        self.address = address


@dataclass(frozen=True)
class CapLimit:
    """One cap as a global concurrency limit."""

    cap_name: CapName
    name: str
    limit: int
    decay: float


def current_flow_run_id() -> str | None:
    """The id of the flow run we are in (also from inside a task run, in any thread), or None."""
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return str(task_ctx.task_run.flow_run_id)
    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        return str(flow_ctx.flow_run.id)
    return None


def _remaining(limit: GlobalConcurrencyLimitResponse) -> int:
    # Mirror of the server's own arithmetic: occupied = active - floor(decay * seconds since last update).
    now = datetime.now(UTC)
    elapsed = max(0.0, (now - limit.updated).total_seconds()) if limit.updated else 0.0
    occupied = max(0, limit.active_slots - math.floor(limit.slot_decay_per_second * elapsed))
    return max(0, limit.limit - occupied)


class SpendBudget:
    """The caps of one wallet (optionally scoped to one flow run), reserved atomically on Prefect's server.

    Args:
        address: the wallet's public address.
        per_run: cap per flow run, atomic units; ignored when `flow_run_id` is None.
        per_day: rolling 24 h cap, atomic units.
        lifetime: lifetime cap, atomic units.
        flow_run_id: the flow run the per-run cap applies to.
        wallet_name: the wallet block's name, for the events (`stablestudio.cap.crossed`).

    Example:
        ```python
        budget = SpendBudget(wallet.address, per_day=5_000_000)
        await budget.ensure()
        remaining = await budget.remaining()     # {"rolling 24 h": 5000000}
        ```
    """

    def __init__(
        self,
        address: str,
        *,
        per_run: int | None = None,
        per_day: int | None = None,
        lifetime: int | None = None,
        flow_run_id: str | None = None,
        wallet_name: str | None = None,
    ) -> None:
        self.address = address
        self.wallet_name = wallet_name
        limits: list[CapLimit] = []
        if per_run is not None and flow_run_id is not None:
            limits.append(
                CapLimit("per flow run", run_limit_name(address, flow_run_id), per_run, NEVER_DECAY)
            )
        if per_day is not None:
            limits.append(CapLimit("rolling 24 h", day_limit_name(address), per_day, per_day / _DAY_SECONDS))
        if lifetime is not None:
            limits.append(CapLimit("lifetime", total_limit_name(address), lifetime, NEVER_DECAY))
        self.limits: tuple[CapLimit, ...] = tuple(limits)
        self._ensured = False
        self._run_id = flow_run_id if per_run is not None else None
        self._flow_run_id = flow_run_id

    @property
    def names(self) -> list[str]:
        """The limit names, in cap order."""
        return [c.name for c in self.limits]

    async def ensure(self) -> None:
        """Create the limits that are missing and align existing ones with the caps. Idempotent.

        Never resets spend: an existing limit keeps its occupied slots; only its size, decay and active flag
        are corrected (a cap disabled with `prefect gcl update --disable` would otherwise stop counting).
        """
        async with get_client() as client:
            for cap in self.limits:
                if cap.limit <= 0:
                    continue  # a zero cap refuses locally; Prefect refuses decay 0 in rate-limit mode
                try:
                    existing = await client.read_global_concurrency_limit_by_name(cap.name)
                except ObjectNotFound:
                    try:
                        await client.create_global_concurrency_limit(
                            GlobalConcurrencyLimitCreate(
                                name=cap.name, limit=cap.limit, active=True, slot_decay_per_second=cap.decay
                            )
                        )
                    except ObjectAlreadyExists:
                        pass  # another process created it first: the same limit
                    continue
                drift = abs(existing.slot_decay_per_second - cap.decay) > 1e-12 * max(1.0, cap.decay)
                if existing.limit != cap.limit or drift or not existing.active:
                    await client.update_global_concurrency_limit(
                        cap.name,
                        GlobalConcurrencyLimitUpdate(
                            limit=cap.limit, slot_decay_per_second=cap.decay, active=True
                        ),
                    )
        self._ensured = True
        _ENSURED.update(self._keys())

    def _keys(self) -> set[tuple[str, str, int, float]]:
        api = str(PREFECT_API_URL.value())
        return {(api, c.name, c.limit, c.decay) for c in self.limits}

    async def reserve(self, amount: int) -> None:
        """Take `amount` from every cap at once, or from none.

        Raises:
            SpendCapExceeded: a cap cannot take it; names the cap, the amount asked and what remains.
        """
        if amount <= 0 or not self.limits:
            return
        for cap in self.limits:
            if cap.limit <= 0:
                raise self._exceeded(cap, amount, remaining=0)
        run_id = self._run_id
        upfront = self._flow_run_id is not None and FLOATS.holds(self._float_key(self._flow_run_id))
        if run_id is None and upfront:
            run_id = self._flow_run_id  # an up-front reservation (`reserve_for_run`) is this run's float
        if run_id is None or not RUN_FLOAT.get():
            await self._take(amount)
            return
        shared = [c.limit for c in self.limits if c.cap_name != "per flow run"]
        key = self._float_key(run_id)
        await FLOATS.reserve(key, amount, shared_caps=shared, take=self._take, refused=self._with_float)

    def _with_float(self, exc: BudgetExceeded, held: int) -> SpendCapExceeded:
        """A refusal that counts this run's `held` float as room (the cap refuses exactly at its boundary)."""
        cap_name: CapName = exc.cap_name if isinstance(exc, SpendCapExceeded) else "per flow run"
        return SpendCapExceeded(
            cap_name=cap_name, cap=exc.cap, asked=exc.asked + held,
            remaining=min(exc.cap, exc.remaining + held), address=self.address,
        )

    def _float_key(self, run_id: str) -> FloatKey:
        return FloatKey(str(PREFECT_API_URL.value()), run_id, tuple(self.names))

    async def reserve_for_run(self, amount: int) -> None:
        """Reserve `amount` for this flow run up front: one all-or-nothing increment of every cap, held as the
        run's float, which `reserve` then spends from (inside flows that set `RUN_FLOAT`) and
        `release_run_budget` gives back when the run ends. A crash leaves it counted as spent.

        Raises:
            ValueError: the budget is not scoped to a flow run.
            SpendCapExceeded: a cap cannot take it all; nothing was taken.

        Example:
            ```python
            budget = await wallet.ensure_budget_limits(current_flow_run_id())
            await budget.reserve_for_run(quote.total)     # the whole batch, or SpendCapExceeded
            ```
        """
        if self._flow_run_id is None:
            raise ValueError("an up-front reservation belongs to a flow run: give the budget its flow_run_id")
        if amount <= 0 or not self.limits:
            return
        for cap in self.limits:
            if cap.limit <= 0:
                raise self._exceeded(cap, amount, remaining=0)
        await FLOATS.add(self._float_key(self._flow_run_id), amount, self._take)

    async def _take(self, amount: int) -> None:
        """Increment every limit by `amount` in one call, or none. Raises `SpendCapExceeded`."""
        # Trusting this process's record of the limits saves two reads per payment; if one vanished or was
        # disabled since, the increment says so and the limits are checked again before one more try.
        trusted = not self._ensured and self._keys() <= _ENSURED
        if not self._ensured and not trusted:
            await self.ensure()
        names = self.names
        async with get_client() as client:
            for _ in range(2):
                try:
                    # One call, one SQL UPDATE over all names. The raw endpoint answers at once (423) instead
                    # of waiting for decay like `rate_limit(timeout_seconds=...)`, whose client-side queue
                    # serialises callers per name set: 15 refusals would each wait out the timeout in turn.
                    response = await increment_caps(client, names, amount)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code in (423, 422):
                        raise await self._refusal(client, amount) from None
                    raise
                acquired = {item["name"] for item in response.json()}
                if acquired == set(names):
                    await self._report_crossings(client, amount)
                    return
                # Strictness beyond `strict=True` (which only checks that *some* limit exists): a limit
                # deleted between ensure() and now would otherwise be skipped silently.
                if acquired:
                    await client.release_concurrency_slots(sorted(acquired), amount, occupancy_seconds=1.0)
                self._ensured = False
                _ENSURED.difference_update(self._keys())
                if not trusted:
                    break
                trusted = False
                await self.ensure()
            missing = sorted(set(names) - acquired)
            raise RuntimeError(f"spend limits {missing} vanished while reserving; nothing was signed")

    async def _report_crossings(self, client: Any, amount: int) -> None:
        """Emit `stablestudio.cap.crossed` for each threshold this increment of `amount` took a cap past.

        The one place a cap's count grows, so each crossing is seen once per increment. Counts are what the
        caps hold (a run's float included), read back after the increment; never raises.
        """
        from prefect.events.worker import should_emit_events

        if not should_emit_events():
            return  # no reads for events nobody receives
        try:
            for cap in self.limits:
                after = cap.limit - _remaining(await client.read_global_concurrency_limit_by_name(cap.name))
                for percent in crossed_thresholds(cap.limit, after - amount, after):
                    label = CAP_LABELS[cap.cap_name]
                    emit_spend_event(
                        CAP_CROSSED, self.address, self.wallet_name,
                        {"cap": cap.cap_name, "threshold_percent": percent, "limit_name": cap.name,
                         "limit": cap.limit, "limit_usd": plain_dollars_from_atomic(cap.limit),
                         "reserved": after, "remaining": cap.limit - after,
                         "remaining_usd": plain_dollars_from_atomic(cap.limit - after), "increment": amount},
                        labels={"stablestudio.cap": label, "stablestudio.threshold": str(percent)},
                    )
        except Exception as exc:  # reporting never refuses or fails a payment
            logging.getLogger("prefect_stablestudio.events").warning(
                "cap crossings not reported: %s", type(exc).__name__
            )

    async def refund(self, amount: int) -> None:
        """Give back a reservation whose payment moved no money (the server rejected it)."""
        if amount <= 0 or not self.limits:
            return
        async with get_client() as client:
            await client.release_concurrency_slots(self.names, amount, occupancy_seconds=1.0)

    async def remaining(self) -> dict[CapName, int]:
        """What is left under each cap, atomic units (a missing limit counts as untouched)."""
        out: dict[CapName, int] = {}
        async with get_client() as client:
            for cap in self.limits:
                try:
                    limit = await client.read_global_concurrency_limit_by_name(cap.name)
                except ObjectNotFound:
                    out[cap.cap_name] = cap.limit
                    continue
                out[cap.cap_name] = _remaining(limit)
        if self._run_id is not None:
            float_left = FLOATS.held(self._float_key(self._run_id))
            out = {c.cap_name: min(c.limit, out[c.cap_name] + float_left) for c in self.limits}
        return out

    async def _refusal(self, client: Any, amount: int) -> SpendCapExceeded:
        state: list[tuple[CapLimit, int]] = []
        for cap in self.limits:
            try:
                limit = await client.read_global_concurrency_limit_by_name(cap.name)
            except ObjectNotFound:
                state.append((cap, cap.limit))
                continue
            state.append((cap, _remaining(limit)))
        blocking = next(((c, r) for c, r in state if r < amount), None)
        if blocking is None:  # decay freed room since the refusal: report the tightest cap
            blocking = min(state, key=lambda cr: cr[1])
        return self._exceeded(blocking[0], amount, remaining=blocking[1])

    def _exceeded(self, cap: CapLimit, amount: int, *, remaining: int) -> SpendCapExceeded:
        return SpendCapExceeded(
            cap_name=cap.cap_name, cap=cap.limit, asked=amount, remaining=remaining, address=self.address
        )




async def release_run_budget(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: delete the per-run limits of a finished flow run (any wallet). Safe to call twice.

    Prefect calls completion/failure/cancellation/crash hooks only on final states, so a flow retry keeps the
    run's spend. Use it on your own flows that call the paid tasks directly:

    Example:
        ```python
        @flow(on_completion=[release_run_budget], on_failure=[release_run_budget])
        async def my_flow(): ...
        ```
    """
    suffix = f"-run-{flow_run.id}"
    floats = FLOATS.release(str(PREFECT_API_URL.value()), str(flow_run.id))
    async with get_client() as client:
        for float_names, left in floats:
            shared = [n for n in float_names if not n.endswith(suffix)]
            if left > 0 and shared:
                # The unspent float goes back to the wallet's caps (the run's own limit is deleted below).
                await client.release_concurrency_slots(shared, left, occupancy_seconds=1.0)
        names = await _limit_names(client)
        for name in names:
            if name.startswith(_PREFIX) and name.endswith(suffix):
                try:
                    await client.delete_global_concurrency_limit_by_name(name)
                except ObjectNotFound:
                    pass


async def _limit_names(client: Any, page: int = 200) -> Sequence[str]:
    names: list[str] = []
    offset = 0
    while True:
        batch = await client.read_global_concurrency_limits(limit=page, offset=offset)
        names.extend(str(limit.name) for limit in batch)
        if len(batch) < page:
            return names
        offset += page
