"""Spend read from the receipts ledger: totals by day and route, and a CSV for the books.

The `prefect-stablestudio spend` command and the run summary artifact both read `flows/receipts.py`'s ledger
through these functions, so they always agree. Only settled payments are spent; a payment whose outcome is
unknown is listed (its nonce, to reconcile) and totalled apart; one the server rejected moved no money.

Example:
    ```python
    receipts = await ReceiptBook().read(since=date(2026, 12, 1))
    for row in daily_totals(receipts):
        print(row.day, row.route, row.payments, row.amount_usd)
    write_csv(receipts, "spend.csv")
    ```
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from prefect_stablestudio.client.money import dollars_from_atomic, plain_dollars_from_atomic
from prefect_stablestudio.flows.receipts import Receipt

__all__ = ["CSV_COLUMNS", "DayRouteTotal", "daily_totals", "explorer_link", "settled_total", "write_csv"]

_EXPLORERS = {
    "eip155:8453": "https://basescan.org/tx/",
    "eip155:84532": "https://sepolia.basescan.org/tx/",
    "tempo:4217": "https://explore.tempo.xyz/tx/",
}

CSV_COLUMNS = (
    "time", "day", "wallet", "wallet_block", "network", "method", "route", "amount", "amount_usd", "pay_to",
    "nonce", "transaction", "explorer", "job_id", "inputs", "flow_run_id", "outcome", "reason",
)


def explorer_link(network: str, transaction: str | None) -> str:
    """A block explorer's page for the transaction ("" when unknown).

    Example:
        >>> explorer_link("eip155:8453", "0xabc")
        'https://basescan.org/tx/0xabc'
        >>> explorer_link("eip155:1", "0xabc")
        ''
    """
    base = _EXPLORERS.get(network)
    return f"{base}{transaction}" if base and transaction else ""


@dataclass(frozen=True)
class DayRouteTotal:
    """Settled spend of one day (UTC) on one route."""

    day: date
    route: str
    payments: int
    amount: int

    @property
    def amount_usd(self) -> Decimal:
        """The amount in dollars."""
        return dollars_from_atomic(self.amount)


def daily_totals(receipts: Iterable[Receipt]) -> list[DayRouteTotal]:
    """Settled payments summed by day and route, oldest day first."""
    sums: dict[tuple[date, str], tuple[int, int]] = {}
    for r in receipts:
        if r.outcome != "settled":
            continue
        count, amount = sums.get((r.time.date(), r.route), (0, 0))
        sums[(r.time.date(), r.route)] = (count + 1, amount + r.amount)
    return [DayRouteTotal(d, route, n, a) for (d, route), (n, a) in sorted(sums.items())]


def settled_total(receipts: Iterable[Receipt]) -> int:
    """Atomic units of the settled payments."""
    return sum(r.amount for r in receipts if r.outcome == "settled")


def write_csv(receipts: Sequence[Receipt], path: str | Path) -> int:
    """One row per payment (columns `CSV_COLUMNS`, an explorer link per transaction); returns the rows."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in receipts:
            writer.writerow([
                r.time.isoformat(), r.time.date().isoformat(), r.wallet, r.wallet_block or "", r.network,
                r.method, r.route, r.amount, plain_dollars_from_atomic(r.amount), r.pay_to, r.nonce,
                r.transaction or "",
                explorer_link(r.network, r.transaction), r.job_id or "", " ".join(r.inputs),
                r.flow_run_id or "", r.outcome, r.reason or "",
            ])
    return len(receipts)
