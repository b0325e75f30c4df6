"""x402 v2 "exact" on EVM, the pure part: decode a 402, choose and check a requirement, sign EIP-3009.

Nothing here does I/O. The order that protects the wallet is: `decode_payment_required` ->
`choose_requirement` (the policy check; raises before anything is signed) -> hooks -> `sign_payment`.

Example:
    >>> from prefect_stablestudio.client.policy import WalletPolicy
    >>> from prefect_stablestudio.client.x402 import PaymentRequired, choose_requirement
    >>> pr = PaymentRequired.model_validate({"x402Version": 2, "resource": {"url": "https://x/api"},
    ...     "accepts": [{"scheme": "exact", "network": "eip155:8453", "amount": "30000",
    ...                  "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    ...                  "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
    ...                  "extra": {"name": "USD Coin", "version": "2"}}]})
    >>> choose_requirement(pr, WalletPolicy()).amount
    30000
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_stablestudio.client.eip712 import domain_separator, transfer_authorization_digest
from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
from prefect_stablestudio.client.errors import PolicyRefused, ProtocolError
from prefect_stablestudio.client.money import dollars_from_atomic, usd_exact_from_atomic
from prefect_stablestudio.client.mpp_challenge import MppOffer
from prefect_stablestudio.client.payment import Payment, Settlement
from prefect_stablestudio.client.policy import WalletPolicy
from prefect_stablestudio.client.signer import Signer, as_signer

__all__ = [
    "PAYMENT_IDENTIFIER",
    "PaymentRequired",
    "Quote",
    "Requirement",
    "authorization_digest",
    "authorization_typed_data",
    "check_requirement",
    "choose_requirement",
    "decode_payment_required",
    "decode_settlement",
    "payment_identifier_for",
    "sign_payment",
]

PAYMENT_IDENTIFIER = "payment-identifier"
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ZERO_ADDRESS = "0x" + "0" * 40
_DIGITS = re.compile(r"^[0-9]{1,78}$")

AUTHORIZATION_TYPES: dict[str, list[dict[str, str]]] = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


class PaymentRequired(BaseModel):
    """The decoded `PAYMENT-REQUIRED` header. `accepts` and `extensions` are kept verbatim for echoing."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    x402_version: int = Field(alias="x402Version")
    error: str | None = None
    resource: dict[str, Any] = Field(default_factory=dict)
    accepts: list[dict[str, Any]] = Field(default_factory=list)
    extensions: dict[str, Any] = Field(default_factory=dict)

    @property
    def resource_url(self) -> str:
        """The paid resource's URL as the server named it."""
        return str(self.resource.get("url", ""))


class Requirement(BaseModel):
    """A parsed entry of `accepts`. `raw` is the entry exactly as received (echoed as `accepted`)."""

    model_config = ConfigDict(frozen=True)

    scheme: str
    network: str
    amount: int
    asset: str
    pay_to: str
    max_timeout_seconds: int
    extra: dict[str, Any]
    raw: dict[str, Any]

    @classmethod
    def from_wire(cls, entry: Any) -> Requirement:
        """Parse one `accepts` entry strictly (amount must be a decimal string of atomic units).

        Raises:
            ProtocolError: a field is missing or has the wrong type.
        """
        if not isinstance(entry, dict):
            raise ProtocolError("payment requirement is not an object")
        amount = entry.get("amount")
        timeout = entry.get("maxTimeoutSeconds")
        if isinstance(amount, bool) or not isinstance(amount, str | int) or not _DIGITS.match(str(amount)):
            raise ProtocolError(f"payment requirement has a malformed amount: {str(amount)[:40]!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise ProtocolError("payment requirement has a malformed maxTimeoutSeconds")
        fields = {k: entry.get(k) for k in ("scheme", "network", "asset", "payTo")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise ProtocolError("payment requirement misses scheme, network, asset or payTo")
        extra = entry.get("extra") or {}
        if not isinstance(extra, dict):
            raise ProtocolError("payment requirement has a malformed extra")
        return cls(
            scheme=str(fields["scheme"]),
            network=str(fields["network"]),
            amount=int(amount),
            asset=str(fields["asset"]),
            pay_to=str(fields["payTo"]),
            max_timeout_seconds=timeout,
            extra=extra,
            raw=copy.deepcopy(entry),
        )


class Quote(BaseModel):
    """What the server asks for one call, after the policy accepted it. Hooks see this before signing."""

    model_config = ConfigDict(frozen=True)

    requirement: Requirement
    payment_required: PaymentRequired
    resource_url: str = Field(description="The URL we POST to (also what the payment is bound to).")
    body_sha256: str
    mpp: MppOffer | None = Field(
        default=None,
        description="Set when the chosen method is MPP: the Tempo charge; `requirement` then mirrors it.",
    )

    @property
    def amount(self) -> int:
        """Atomic units."""
        return self.requirement.amount

    @property
    def amount_usd(self) -> Decimal:
        """Dollars."""
        return dollars_from_atomic(self.requirement.amount)

    @property
    def pay_to(self) -> str:
        """The recipient."""
        return self.requirement.pay_to

    @property
    def description(self) -> str:
        """The server's description of the resource, if any."""
        return str(self.payment_required.resource.get("description", ""))


def decode_payment_required(header: str) -> PaymentRequired:
    """Decode a `PAYMENT-REQUIRED` header (tolerant base64 JSON).

    Raises:
        ProtocolError: undecodable, not x402 version 2, or malformed.
    """
    data = decode_b64_json(header)
    return payment_required_from_json(data)


def payment_required_from_json(data: Any) -> PaymentRequired:
    """Validate decoded PaymentRequired JSON.

    Raises:
        ProtocolError: not x402 version 2, or malformed.
    """
    if not isinstance(data, dict) or data.get("x402Version") != 2:
        raise ProtocolError("PAYMENT-REQUIRED is not an x402 version 2 object")
    try:
        return PaymentRequired.model_validate(data)
    except ValidationError:
        raise ProtocolError("PAYMENT-REQUIRED is malformed") from None


def decode_settlement(header: str) -> Settlement:
    """Decode a `PAYMENT-RESPONSE` header.

    Raises:
        ProtocolError: undecodable or malformed.
    """
    data = decode_b64_json(header)
    try:
        return Settlement.model_validate(data)
    except ValidationError:
        raise ProtocolError("PAYMENT-RESPONSE is malformed") from None


def check_requirement(req: Requirement, policy: WalletPolicy) -> tuple[str, str] | None:
    """Check one requirement against the policy. Returns None when acceptable, else (reason, message)."""
    if req.scheme != "exact":
        return "scheme_not_allowed", f"scheme {req.scheme!r} is not 'exact'"
    if req.network not in policy.allowed_networks:
        return "network_not_allowed", f"network {req.network!r} is not allowed"
    asset = policy.asset_for(req.network, req.asset)
    if asset is None:
        return "asset_not_allowed", f"asset {req.asset} on {req.network} is not allowed"
    if req.extra.get("name") != asset.name or req.extra.get("version") != asset.version:
        return (
            "asset_domain_mismatch",
            f"EIP-712 domain of {req.asset} must be {asset.name!r}/{asset.version!r}",
        )
    if not _ADDRESS.match(req.pay_to) or req.pay_to.lower() == _ZERO_ADDRESS:
        return "pay_to_invalid", f"payTo {req.pay_to[:50]!r} is not a valid non-zero address"
    if policy.allowed_pay_to is not None and req.pay_to.lower() not in policy.allowed_pay_to:
        return "pay_to_not_allowed", f"payTo {req.pay_to} is not in the allow-list"
    if req.amount <= 0:
        return "amount_invalid", "amount must be positive"
    if req.amount > policy.max_amount_per_call:
        return "amount_over_cap", (
            f"amount {usd_exact_from_atomic(req.amount)} is over the per-call cap "
            f"{usd_exact_from_atomic(policy.max_amount_per_call)}"
        )
    if not policy.min_timeout_seconds <= req.max_timeout_seconds <= policy.max_timeout_seconds:
        return "timeout_out_of_bounds", (
            f"maxTimeoutSeconds {req.max_timeout_seconds} is outside "
            f"[{policy.min_timeout_seconds}, {policy.max_timeout_seconds}]"
        )
    return None


def choose_requirement(payment_required: PaymentRequired, policy: WalletPolicy) -> Requirement:
    """The first requirement the policy accepts (each one is checked, not just `accepts[0]`).

    Raises:
        PolicyRefused: none is acceptable; `reason` is the first requirement's refusal.
    """
    refusals: list[tuple[str, str]] = []
    for entry in payment_required.accepts:
        try:
            req = Requirement.from_wire(entry)
        except ProtocolError as exc:
            refusals.append(("malformed_requirement", str(exc)))
            continue
        refusal = check_requirement(req, policy)
        if refusal is None:
            return req
        refusals.append(refusal)
    if not refusals:
        raise PolicyRefused("the server offered no payment requirement", reason="no_requirements")
    reason = refusals[0][0]
    raise PolicyRefused(f"refused to sign: {'; '.join(m for _, m in refusals)}", reason=reason)


def payment_identifier_for(idempotency_key: str | None, resource_url: str = "") -> str:
    """An x402 payment-identifier id (16-128 characters of [A-Za-z0-9_-]).

    Derived from the idempotency key and the resource, so the same logical call always gets the same id
    and two routes never share one; random without a key.
    """
    if idempotency_key is None:
        return "pay_" + secrets.token_hex(16)
    digest = hashlib.sha256(f"{resource_url}\n{idempotency_key}".encode()).hexdigest()
    return "pay_" + digest[:48]


def authorization_typed_data(
    req: Requirement, payer: str, valid_before: int, nonce: bytes
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The EIP-712 (domain, types, message) of a TransferWithAuthorization for `req`."""
    domain = {
        "name": req.extra["name"],
        "version": req.extra["version"],
        "chainId": _chain_id(req.network),
        "verifyingContract": req.asset,
    }
    message = {
        "from": payer,
        "to": req.pay_to,
        "value": req.amount,
        "validAfter": 0,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    return domain, AUTHORIZATION_TYPES, message


def authorization_digest(req: Requirement, payer: str, valid_before: int, nonce: bytes) -> bytes:
    """The EIP-712 hash of `authorization_typed_data(req, payer, valid_before, nonce)`, the one to sign.

    Raises:
        ValueError: the network is not eip155:<n>, or an address, amount or the nonce is malformed.
    """
    domain = domain_separator(req.extra["name"], req.extra["version"], _chain_id(req.network), req.asset)
    return transfer_authorization_digest(
        domain,
        payer=payer,
        pay_to=req.pay_to,
        value=req.amount,
        valid_after=0,
        valid_before=valid_before,
        nonce=nonce,
    )


def _chain_id(network: str) -> int:
    return int(network.split(":", 1)[1])


def sign_payment(
    account: Signer | LocalAccount,
    quote: Quote,
    *,
    payment_identifier: str | None = None,
    now: float | None = None,
) -> Payment:
    """Sign the quote's requirement with EIP-3009 and build the `PAYMENT-SIGNATURE` header.

    Call only after `choose_requirement` accepted the requirement and the hooks agreed. `validBefore` is
    stamped here, right before signing. `payment_identifier` is sent only if the server advertised it.
    `account` is best a `Signer` (the key parsed once); a `LocalAccount` gives the same signature, slower.
    """
    signer = as_signer(account)
    req = quote.requirement
    stamp = time.time() if now is None else now
    valid_before = int(stamp) + req.max_timeout_seconds
    nonce = secrets.token_bytes(32)
    digest = authorization_digest(req, signer.address, valid_before, nonce)
    signature = "0x" + signer.sign_hash(digest).hex()
    nonce_hex = "0x" + nonce.hex()

    extensions = copy.deepcopy(quote.payment_required.extensions)
    advertised = isinstance(extensions.get(PAYMENT_IDENTIFIER), dict)
    pid = payment_identifier if advertised else None
    if advertised:
        pid = pid or payment_identifier_for(None, quote.resource_url)
        declared = extensions[PAYMENT_IDENTIFIER]
        info = declared.get("info") if isinstance(declared.get("info"), dict) else {}
        extensions[PAYMENT_IDENTIFIER] = {**declared, "info": {**info, "id": pid}}

    payload = {
        "x402Version": 2,
        "resource": copy.deepcopy(quote.payment_required.resource),
        "accepted": req.raw,
        "payload": {
            "signature": signature,
            "authorization": {
                "from": signer.address,
                "to": req.pay_to,
                "value": str(req.amount),
                "validAfter": "0",
                "validBefore": str(valid_before),
                "nonce": nonce_hex,
            },
        },
        "extensions": extensions,
    }
    return Payment(
        header=encode_b64_json(payload),
        nonce=nonce_hex,
        amount=req.amount,
        asset=req.asset,
        network=req.network,
        pay_to=req.pay_to,
        payer=signer.address,
        resource_url=quote.resource_url,
        body_sha256=quote.body_sha256,
        valid_before=valid_before,
        signed_at=datetime.fromtimestamp(stamp, UTC),
        payment_identifier=pid,
    )
