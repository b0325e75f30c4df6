"""A flow run's float: cap room reserved ahead in one all-or-nothing increment, then spent locally.

Why this exists (a speed trick, fenced here): every reservation is an increment on Prefect's server, and
increments go one at a time per event loop (~80 ms each under load), which held a 200-edit batch to about 12
payments/s (`python -m bench`, the "budget" rows; bench/README.md). A run that spends from a float asks the
server about once per 64 payments instead.

The rules:
- The first float holds 8 payments; each refill doubles it, up to 64 payments.
- Beyond those first 8 payments a float never holds more than a 20th of a cap other runs share (the day and
  lifetime caps), so one run cannot starve the others.
- Only flows that give the float back when they end (`release_run_budget`) use one: they set `RUN_FLOAT`.
  A crash leaves the float counted as spent, which errs on the safe side.
- When a refill does not fit, exactly what the payment lacks is taken; a refusal counts the float as room,
  so a cap refuses exactly at its boundary.

Floats are keyed by (API URL, flow run id, limit names) and live in this process (`FLOATS`).

Example:
    ```python
    key = FloatKey(api_url, flow_run_id, ("stablestudio-0xabc-day",))
    await FLOATS.reserve(key, 45_000, shared_caps=[5_000_000], take=budget_take, refused=explain)
    ```
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from prefect_stablestudio.client.errors import BudgetExceeded

__all__ = ["FLOATS", "RUN_FLOAT", "FloatKey", "RunFloats"]

FIRST_FLOAT_PAYMENTS = 8
MAX_FLOAT_PAYMENTS = 64
SHARE_OF_SHARED_CAP = 20

RUN_FLOAT: contextvars.ContextVar[bool] = contextvars.ContextVar("stablestudio_run_float", default=False)
"""Set by flows that release the float with `release_run_budget`; off elsewhere, so a flow without the hook
never holds cap room it does not spend."""


class FloatKey(NamedTuple):
    """Which float: one per Prefect API, flow run and set of limits."""

    api_url: str
    flow_run_id: str
    limit_names: tuple[str, ...]


class RunFloats:
    """The floats of this process: what each holds, its next size, and one lock per float and event loop."""

    def __init__(self) -> None:
        self._held: dict[FloatKey, int] = {}
        self._sizes: dict[FloatKey, int] = {}
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[FloatKey, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def holds(self, key: FloatKey) -> bool:
        """Whether this run has a float (possibly empty) for these limits."""
        return key in self._held

    def held(self, key: FloatKey) -> int:
        """What the float holds, atomic units."""
        return self._held.get(key, 0)

    def _lock(self, key: FloatKey) -> asyncio.Lock:
        return self._locks.setdefault(asyncio.get_running_loop(), {}).setdefault(key, asyncio.Lock())

    async def reserve(
        self,
        key: FloatKey,
        amount: int,
        *,
        shared_caps: list[int],
        take: Callable[[int], Awaitable[None]],
        refused: Callable[[BudgetExceeded, int], BudgetExceeded],
    ) -> None:
        """Spend `amount` from the float, refilling it through `take` (the all-or-nothing increment).

        `shared_caps` are the limits of the caps other runs share; `refused(exc, held)` rebuilds a refusal
        so that it counts the `held` float as room.
        """
        async with self._lock(key):
            have = self._held.get(key, 0)
            if have >= amount:
                self._held[key] = have - amount
                return
            size = self._sizes.get(key, FIRST_FLOAT_PAYMENTS)
            extra = amount * (size - 1)
            if shared_caps:
                bound = min(shared_caps) // SHARE_OF_SHARED_CAP
                extra = min(extra, max(amount * (FIRST_FLOAT_PAYMENTS - 1), bound))
            try:
                await take(amount - have + extra)
            except BudgetExceeded:
                pass  # no room for a float: take exactly what this payment lacks
            else:
                self._held[key] = extra
                self._sizes[key] = min(2 * size, MAX_FLOAT_PAYMENTS)
                return
            try:
                await take(amount - have)
            except BudgetExceeded as exc:
                raise refused(exc, have) from None
            self._held[key] = 0

    async def add(self, key: FloatKey, amount: int, take: Callable[[int], Awaitable[None]]) -> None:
        """Take `amount` through `take` and hold it as (more) float: an up-front reservation."""
        async with self._lock(key):
            await take(amount)
            self._held[key] = self._held.get(key, 0) + amount

    def release(self, api_url: str, flow_run_id: str) -> list[tuple[tuple[str, ...], int]]:
        """Forget this run's floats; returns (limit names, unspent amount) for each, to give back."""
        keys = [k for k in self._held if k.api_url == api_url and k.flow_run_id == flow_run_id]
        for key in keys:
            self._sizes.pop(key, None)
        return [(key.limit_names, self._held.pop(key)) for key in keys]


FLOATS = RunFloats()
"""The floats of this process."""
