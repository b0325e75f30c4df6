"""What happens before (and after) money moves: every payment the plugin signs goes through `PaymentGuard`.

The client (`prefect_stablestudio.client.paying.PaidCall`) calls three hooks around each signature; the guard
is the one object behind them, and its steps run in this order:

1. **cap reservation** (`before_signing`): the quoted amount is reserved from every spend cap in one
   all-or-nothing increment on Prefect's server (`SpendBudget.reserve`); `SpendCapExceeded` refuses, nothing
   is signed.
2. **terms check** (`before_signing`): the record may refuse a quote whose recipient, asset or network differ
   from the ones an earlier signature for the same job pinned (`PolicyRefused("pay_to_changed")`); the
   reservation is refunded.
3. **payment record** (`after_signing`): the record persists the signed payment (a paid job's intent record,
   `flows/intents.IntentHooks`; an upload's `flows/uploads.PaymentLog`). If that write fails the
   reservation is refunded and the client sends nothing: money never moves without a record.
4. **send**: the client sends the signed request (and re-sends the same header after an ambiguous failure).
5. **refund** (`after_outcome`): a payment the server rejected gives its reservation back (no money moved);
   a settled or unknown one stays counted.
6. **outcome** (`after_outcome`): the record writes what became of the payment (settled, rejected, unknown).
7. **receipt and event** (`after_outcome`, even when step 6 raised): the receipt in the ledger and the
   `stablestudio.payment.*` event (`flows/receipts.PaymentRecorder`); never fails the payment.

Refusals before signing (policy or cap) and failed paid jobs are reported as events by
`flows/receipts.reporting` around every step's client, since no hook sees them.

Example:
    ```python
    guard = PaymentGuard(wallet.budget(run_id), record=IntentHooks(store, intent))
    async with wallet.get_client(hooks=guard, enforce_budget=False) as client:
        ...
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_stablestudio.blocks.budget import SpendBudget
from prefect_stablestudio.client.payment import Payment, PaymentHooks, PaymentOutcome

if TYPE_CHECKING:
    from prefect_stablestudio.client.x402 import Quote

__all__ = ["PaymentGuard"]


class PaymentGuard:
    """The payment hooks of every client the plugin opens: the seven steps of the module docstring, in order.

    Args:
        budget: the caps to reserve from (steps 1 and 5); None: no caps (raw-client tests only).
        record: the paying step's record (steps 2, 3 and 6): an intent record, a payment log, or None.
        report: called last after every outcome (step 7): receipts and events; None for none.
    """

    def __init__(
        self,
        budget: SpendBudget | None,
        *,
        record: PaymentHooks | None = None,
        report: PaymentHooks | None = None,
    ) -> None:
        self.budget = budget
        self.record = record
        self.report = report

    async def before_signing(self, quote: Quote) -> None:
        """1. reserve the caps; 2. let the record check the pinned terms (refunding on refusal)."""
        if self.budget is not None:
            await self.budget.reserve(quote.amount)
        if self.record is not None:
            try:
                await self.record.before_signing(quote)
            except BaseException:
                await self._refund(quote.amount)
                raise

    async def after_signing(self, payment: Payment) -> None:
        """3. persist the signed payment; if that fails, refund (the client then sends nothing)."""
        if self.record is not None:
            try:
                await self.record.after_signing(payment)
            except BaseException:
                await self._refund(payment.amount)
                raise

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """5. refund a rejected payment; 6. record the outcome; 7. receipt and event (always)."""
        try:
            if outcome.status == "rejected":
                await self._refund(payment.amount)
            if self.record is not None:
                await self.record.after_outcome(payment, outcome)
        finally:
            if self.report is not None:
                await self.report.after_outcome(payment, outcome)

    async def _refund(self, amount: int) -> None:
        if self.budget is not None:
            await self.budget.refund(amount)
