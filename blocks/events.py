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

Emitting never fails the caller: `emit_spend_event` logs and swallows any error. Prefect's `emit_event`
builds the event and queues it; its events worker thread attaches the run's resources and sends it. About
1 ms of CPU per event in all, most of it in Prefect's worker (`python -m bench.events`).

Example:
    ```python
    from prefect_stablestudio.blocks.events import PAYMENT_SETTLED, emit_spend_event

    emit_spend_event(PAYMENT_SETTLED, "0xAbC...", "my-wallet", {"route": "flux-2-pro/edit", "amount": 40000})
    ```
"""

from __future__ import annotations

import logging
from typing import Any

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

    Args:
        name: one of `EVENT_NAMES`.
        address: the wallet's public address (the resource).
        block_name: the wallet block's name, if it was loaded from one.
        payload: public facts only (the callers in this package never put a key or a signature here).
        labels: extra resource labels (a cap crossing's cap and threshold).
    """
    try:
        emit_event(
            name,
            resource=wallet_resource(address, block_name, **(labels or {})),
            payload=payload,
        )
    except Exception as exc:  # an event is a report: it never fails the payment or the edit it reports
        _log.warning("event %s not emitted: %s", name, type(exc).__name__)
