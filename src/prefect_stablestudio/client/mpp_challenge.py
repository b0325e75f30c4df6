"""MPP (Machine Payments Protocol) Tempo charge challenges: parse them from a 402, check them against policy.

Pure and offline (no signing here; see `prefect_stablestudio.client.mpp`). A 402 may carry, beside the x402
`PAYMENT-REQUIRED`, one or more `WWW-Authenticate: Payment id=.., realm=.., method="tempo",
intent="charge", request=<base64url JSON>, expires=..` challenges. Amount, currency, recipient and chain are
read from the live challenge, never assumed.

Example:
    >>> from prefect_stablestudio.client.mpp_challenge import parse_offers
    >>> parse_offers(['Bearer realm="x"'])
    []
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.client.errors import PolicyRefused, ProtocolError, UntrustedServerValue
from prefect_stablestudio.client.money import usd_exact_from_atomic
from prefect_stablestudio.client.payment import Settlement
from prefect_stablestudio.client.policy import WalletPolicy
from prefect_stablestudio.client.server_values import check_mpp_challenge

if TYPE_CHECKING:
    from prefect_stablestudio.client.payment import Payment

__all__ = ["MppOffer", "check_offer", "choose_offer", "decode_receipt", "parse_offers"]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ZERO_ADDRESS = "0x" + "0" * 40


class MppOffer(BaseModel):
    """One Tempo charge challenge, parsed. `header` is the challenge as received (signed over verbatim)."""

    model_config = ConfigDict(frozen=True)

    header: str = Field(repr=False, description="The challenge text as received.")
    id: str
    realm: str
    expires: str | None
    request: dict[str, Any]
    amount: int = Field(description="Atomic units of `currency`.")
    currency: str
    recipient: str
    chain_id: int | None
    fee_payer: bool = Field(description="The server co-signs and pays gas (cannot be exercised offline).")

    @property
    def network(self) -> str:
        """`tempo:<chainId>`, the label a Tempo payment is recorded under."""
        return f"tempo:{self.chain_id}"

    def expires_at(self) -> float | None:
        """The challenge expiry (unix seconds), or None when absent or unparseable."""
        if not self.expires:
            return None
        try:
            return datetime.fromisoformat(self.expires.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


def _offer(text: str) -> MppOffer | None:
    from mpp import Challenge  # pympp is imported on first use: it costs x402-only users 0.6 s at start

    try:
        challenge = Challenge.from_www_authenticate(text)
    except Exception:  # pympp raises several types for a malformed challenge: skip it, never pay it
        return None
    if challenge.method != "tempo" or challenge.intent != "charge":
        return None
    request = challenge.request
    try:
        check_mpp_challenge(challenge.id, challenge.realm, challenge.expires, request)
    except UntrustedServerValue:
        return None  # a malformed challenge is skipped, never paid
    amount, currency, recipient = (str(request[k]) for k in ("amount", "currency", "recipient"))
    details = request.get("methodDetails")
    details = details if isinstance(details, dict) else {}
    chain = details.get("chainId")
    return MppOffer(
        header=text,
        id=challenge.id,
        realm=challenge.realm,
        expires=challenge.expires,
        request=dict(request),
        amount=int(amount),
        currency=currency,
        recipient=recipient,
        chain_id=chain if isinstance(chain, int) and not isinstance(chain, bool) else None,
        fee_payer=details.get("feePayer") is True,
    )


def parse_offers(www_authenticate: list[str]) -> list[MppOffer]:
    """Every well-formed Tempo charge challenge in the `WWW-Authenticate` values, in order."""
    from mpp.client.transport import _payment_challenges  # pinned pympp: keeps quoted commas together

    offers: list[MppOffer] = []
    for value in www_authenticate:
        for text in _payment_challenges(value):
            offer = _offer(text)
            if offer is not None:
                offers.append(offer)
    return offers


def check_offer(
    offer: MppOffer, policy: WalletPolicy, resource_url: str, now: float
) -> tuple[str, str] | None:
    """Check one offer against the policy. Returns None when acceptable, else (reason, message)."""
    parts = urlsplit(resource_url)
    if offer.realm not in (parts.netloc, parts.hostname):
        return "realm_mismatch", f"realm {offer.realm[:60]!r} is not the host of {resource_url}"
    if offer.chain_id is None or offer.chain_id not in policy.mpp_chain_ids:
        return "network_not_allowed", f"Tempo chain {offer.chain_id} is not allowed"
    if offer.currency.lower() not in policy.mpp_currencies:
        return "asset_not_allowed", f"currency {offer.currency[:50]} on Tempo is not allowed"
    if not _ADDRESS.match(offer.recipient) or offer.recipient.lower() == _ZERO_ADDRESS:
        return "pay_to_invalid", f"recipient {offer.recipient[:50]!r} is not a valid non-zero address"
    if policy.mpp_recipients is not None and offer.recipient.lower() not in policy.mpp_recipients:
        return "pay_to_not_allowed", f"recipient {offer.recipient} is not in the allow-list"
    if offer.amount <= 0:
        return "amount_invalid", "amount must be positive"
    if offer.amount > policy.max_amount_per_call:
        return "amount_over_cap", (
            f"amount {usd_exact_from_atomic(offer.amount)} is over the per-call cap "
            f"{usd_exact_from_atomic(policy.max_amount_per_call)}"
        )
    expires = offer.expires_at()
    if expires is None or not now < expires <= now + policy.max_timeout_seconds:
        return "timeout_out_of_bounds", f"challenge expiry {offer.expires!r} is missing, past or too far"
    return None


def choose_offer(offers: list[MppOffer], policy: WalletPolicy, resource_url: str, now: float) -> MppOffer:
    """The first offer the policy accepts.

    Raises:
        PolicyRefused: none is acceptable (reason of the first refusal), or there is no offer.
    """
    refusals: list[tuple[str, str]] = []
    for offer in offers:
        refusal = check_offer(offer, policy, resource_url, now)
        if refusal is None:
            return offer
        refusals.append(refusal)
    if not refusals:
        raise PolicyRefused("the server offered no MPP Tempo charge", reason="no_requirements")
    raise PolicyRefused(f"refused to sign: {'; '.join(m for _, m in refusals)}", reason=refusals[0][0])


def decode_receipt(header: str, payment: Payment) -> Settlement:
    """A `Payment-Receipt` as a `Settlement` (`transaction` is the receipt's reference, the Tempo tx hash).

    Raises:
        ProtocolError: undecodable or not a success receipt.
    """
    from mpp import Receipt

    try:
        receipt = Receipt.from_payment_receipt(header)
    except Exception:  # pympp raises several types for a malformed receipt
        raise ProtocolError("Payment-Receipt is malformed") from None
    return Settlement(
        success=receipt.status == "success",
        transaction=receipt.reference,
        network=payment.network,
        payer=payment.payer,
    )
