"""A log of the payments a call signed and what became of each, so a failed call still accounts for them.

A paid call can fail after its money moved (an upload whose blob PUT never succeeded) or leave the outcome
unknown (a reply lost after settlement). Such payments bought nothing usable, yet every cent must show: they
are logged at WARNING (nonce, amount, recipient; never the key) and travel as `UnreconciledPayment` records to
the edit's outcome, the batch result and the run's artifacts.

Example:
    ```python
    log = PaymentLog()
    async with wallet.get_client(hooks=log) as client:
        try:
            await client.upload("cat.png")
        except Exception as exc:
            owed = log.unreconciled("upload", exc)
    ```
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger

from prefect_stablestudio.client.money import to_dollars
from prefect_stablestudio.client.payment import NoHooks, Payment, PaymentOutcome
from prefect_stablestudio.flows.models import UnreconciledPayment

__all__ = ["PaymentLog"]


class PaymentLog(NoHooks):
    """Every payment a client signs and what became of it, so that a failed call still accounts for them."""

    def __init__(self) -> None:
        self.signed: dict[str, Payment] = {}
        self.outcomes: dict[str, PaymentOutcome] = {}

    async def after_signing(self, payment: Payment) -> None:
        """Remember the payment."""
        self.signed[payment.nonce] = payment

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """Remember what happened to it."""
        self.signed[payment.nonce] = payment
        self.outcomes[payment.nonce] = outcome

    def unreconciled(self, what: Literal["upload", "edit"], exc: BaseException) -> list[UnreconciledPayment]:
        """The payments that moved money or may have (all but the refused), logged at WARNING."""
        try:
            logger: Any = get_run_logger()
        except MissingContextError:  # used outside a flow or task run
            logger = get_logger("prefect_stablestudio.payments")
        owed: list[UnreconciledPayment] = []
        for nonce, payment in self.signed.items():
            outcome = self.outcomes.get(nonce)
            if outcome is not None and outcome.status == "rejected":
                continue
            status: Literal["settled", "unknown"] = (
                "settled" if outcome is not None and outcome.status == "settled" else "unknown"
            )
            reason = (outcome.reason if outcome is not None else None) or f"{type(exc).__name__}: {exc}"
            owed.append(UnreconciledPayment.of(payment, what=what, status=status, reason=reason))
            logger.warning(
                "%s payment %s of $%s to %s is %s but bought nothing usable (%s): reconcile it by its nonce",
                what, nonce, to_dollars(payment.amount), payment.pay_to,
                "settled" if status == "settled" else "of unknown outcome", reason[:200],
            )
        return owed
