"""The ledger and the counters: what happened, for tests and benchmarks to assert on (thread-safe)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from prefect_stablestudio.simulator.payments import INSUFFICIENT_BALANCE, REPLAYED
from prefect_stablestudio.simulator.settings import atomic_to_usdc, usdc_to_atomic


@dataclass(frozen=True)
class LedgerPayment:
    """One settled payment."""

    payer: str
    amount: int
    nonce: str
    transaction: str
    route: str
    resource_id: str
    settled_at: float
    network: str = "eip155:8453"


_BASE = "eip155:8453"


def _wallet_key(address: str, network: str) -> str:
    """Balances key: the bare address on Base (as before), ``network:address`` elsewhere."""
    return address.lower() if network == _BASE else f"{network}:{address.lower()}"


class SettlementRefused(Exception):
    """Settlement found the nonce used or the balance short; ``reason`` is the x402 code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Ledger:
    """Balances, used nonces, settled payments and every counter of the simulator.

    Example:
        >>> ledger = Ledger(default_balance=100, funded={}, seed=0)
        >>> ledger.settle("0xAb", 30, "0x01", route="upload", resource_id="u1").amount
        30
        >>> ledger.balance("0xab")
        70
    """

    def __init__(self, *, default_balance: int, funded: dict[str, Decimal], seed: int) -> None:
        self._lock = threading.Lock()
        self._default_balance = default_balance
        self._seed = seed
        self._balances: dict[str, int] = {a.lower(): usdc_to_atomic(v) for a, v in funded.items()}
        self._used_nonces: set[tuple[str, str]] = set()
        self._payments: list[LedgerPayment] = []
        self._spend: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.siwx_failures: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def count(self, counter: Counter[str], key: str) -> None:
        """Add one to ``counter[key]`` under the lock."""
        with self._lock:
            counter[key] += 1

    def fund(self, address: str, amount: int) -> int:
        """Add ``amount`` atomic units to ``address`` and return the new balance."""
        with self._lock:
            key = address.lower()
            self._balances[key] = self._balances.get(key, self._default_balance) + amount
            return self._balances[key]

    def balance(self, address: str, network: str = _BASE) -> int:
        """The balance of ``address`` on ``network`` (the default balance for an unseen wallet)."""
        with self._lock:
            return self._balances.get(_wallet_key(address, network), self._default_balance)

    def nonce_used(self, payer: str, nonce: str, network: str = _BASE) -> bool:
        """Whether ``(payer, nonce)`` already settled on ``network``."""
        with self._lock:
            return (_wallet_key(payer, network), nonce.lower()) in self._used_nonces

    def settle(
        self, payer: str, amount: int, nonce: str, *, route: str, resource_id: str, network: str = _BASE
    ) -> LedgerPayment:
        """Move ``amount`` from ``payer`` to payTo, consuming the nonce, atomically.

        Each network (Base USDC, Tempo) keeps its own balance per wallet; a Tempo ``nonce`` is the transaction
        hash, so a replayed transaction is refused like a replayed authorization.

        Raises:
            SettlementRefused: the nonce was used (a replay) or the balance is short; nothing moved.
        """
        key, nonce_key = _wallet_key(payer, network), nonce.lower()
        with self._lock:
            if (key, nonce_key) in self._used_nonces:
                raise SettlementRefused(REPLAYED)
            balance = self._balances.get(key, self._default_balance)
            if balance < amount:
                raise SettlementRefused(INSUFFICIENT_BALANCE)
            self._balances[key] = balance - amount
            self._used_nonces.add((key, nonce_key))
            self._spend[key] += amount
            tx = (
                nonce_key
                if network != _BASE
                else "0x" + hashlib.sha256(f"{self._seed}:{key}:{nonce_key}".encode()).hexdigest()
            )
            payment = LedgerPayment(payer, amount, nonce_key, tx, route, resource_id, time.time(), network)
            self._payments.append(payment)
            return payment

    def payments(self) -> list[LedgerPayment]:
        """Every settled payment, oldest first."""
        with self._lock:
            return list(self._payments)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of counters and ledger (amounts as atomic ints plus USDC strings)."""
        with self._lock:
            payments = [asdict(p) for p in self._payments]
            total = sum(p.amount for p in self._payments)
            return {
                "counters": {
                    "requests": dict(self.requests),
                    "payments": len(self._payments),
                    "payment_refusals": dict(self.refusals),
                    "replays_refused": self.refusals[REPLAYED]
                    + self.refusals["tempo_transaction_nonce_used"],
                    "siwx_failures": dict(self.siwx_failures),
                    "siwx_failures_total": sum(self.siwx_failures.values()),
                    "faults_injected": dict(self.faults),
                    "faults_injected_total": sum(self.faults.values()),
                    "events": dict(self.events),
                },
                "ledger": {
                    "payments": payments,
                    "total_paid": total,
                    "total_paid_usdc": str(atomic_to_usdc(total)),
                },
                "balances": dict(self._balances),
                "spend": dict(self._spend),
                "spend_usdc": {a: str(atomic_to_usdc(v)) for a, v in self._spend.items()},
            }
