"""A signed payment as a value: persist it, re-send it, reconcile it. Plus the hooks around signing.

Example:
    >>> from prefect_stablestudio.client.payment import NoHooks, PaymentHooks
    >>> isinstance(NoHooks(), PaymentHooks)
    True
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.client.money import dollars_from_atomic

if TYPE_CHECKING:
    from prefect_stablestudio.client.x402 import Quote

__all__ = ["NoHooks", "Payment", "PaymentHooks", "PaymentOutcome", "Settlement"]


class Payment(BaseModel):
    """One signed payment, ready to send (or re-send): an x402 EIP-3009 authorization (`PAYMENT-SIGNATURE`)
    or an MPP Tempo charge credential (`Authorization: Payment ...`, `method="mpp"`).

    The nonce is unique (for MPP it is the signed transaction's hash), so the same header can move money at
    most once: re-sending it is always safe, signing a new one for the same call is not. It never contains the
    key.
    """

    model_config = ConfigDict(frozen=True)

    header: str = Field(
        repr=False, description="The encoded PAYMENT-SIGNATURE value, or for MPP the Authorization value."
    )
    nonce: str = Field(description="0x + 64 hex: the EIP-3009 nonce, or for MPP the transaction hash.")
    amount: int = Field(description="Atomic units.")
    asset: str
    network: str
    pay_to: str
    payer: str
    resource_url: str
    body_sha256: str = Field(description="sha256 hex of the exact request body this payment was signed for.")
    valid_before: int = Field(description="Unix seconds; the authorization is void afterwards.")
    signed_at: datetime
    payment_identifier: str | None = Field(default=None, description="x402 payment-identifier id, if sent.")
    method: Literal["x402", "mpp"] = Field(default="x402", description="The payment protocol.")

    @property
    def request_headers(self) -> dict[str, str]:
        """The header that carries this payment on the paid request."""
        return {"Authorization": self.header} if self.method == "mpp" else {"PAYMENT-SIGNATURE": self.header}

    @property
    def amount_usd(self) -> Decimal:
        """The amount in dollars."""
        return dollars_from_atomic(self.amount)


class Settlement(BaseModel):
    """The decoded `PAYMENT-RESPONSE`."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    success: bool
    transaction: str = ""
    network: str | None = None
    payer: str | None = None
    error_reason: str | None = Field(default=None, alias="errorReason")


class PaymentOutcome(BaseModel):
    """What happened to a payment that was sent.

    `status` is "settled" (money moved; `settlement` is set unless the reply was lost and we resumed),
    "rejected" (no money moved; `reason`) or "unknown" (reconcile with the payment's nonce). `chain_state`
    is what the token said about the authorization when its outcome was ambiguous (`chain.ChainState`:
    "settled", "still_valid", "expired_unused", "unknown"); None when the chain was not needed.
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["settled", "rejected", "unknown"]
    settlement: Settlement | None = None
    reason: str | None = None
    response: Any = None
    chain_state: Literal["settled", "still_valid", "expired_unused", "unknown"] | None = None


@runtime_checkable
class PaymentHooks(Protocol):
    """Async callbacks around every payment. Raise from `before_signing` to refuse: nothing is signed."""

    async def before_signing(self, quote: Quote) -> None:
        """After the policy check, before signing: reserve budget here, or raise to refuse."""

    async def after_signing(self, payment: Payment) -> None:
        """After signing, before sending: persist the payment here."""

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """After the server answered (or we gave up): record the outcome."""


class NoHooks:
    """Hooks that do nothing; subclass and override what you need.

    Example:
        >>> class Log(NoHooks):
        ...     async def after_signing(self, payment: Payment) -> None:
        ...         print("signed", payment.nonce)
    """

    async def before_signing(self, quote: Quote) -> None:
        """Do nothing."""

    async def after_signing(self, payment: Payment) -> None:
        """Do nothing."""

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """Do nothing."""
