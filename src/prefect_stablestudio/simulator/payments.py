"""x402 v2 "exact" EVM payments, the server side: quote, decode, verify (pure functions, no I/O).

The simulator is its own facilitator: it recovers the EIP-712 ``TransferWithAuthorization`` signer locally and
checks the authorization against what it quoted. Balance and nonce use live in the ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage
from eth_utils.crypto import keccak

from prefect_stablestudio.simulator.encoding import decode_b64_json

# x402 facilitators refuse an authorization that expires within this many seconds (clock margin).
VALID_BEFORE_MARGIN_SECONDS = 6
# The official codes (@x402/core's resource server and @x402/evm's exact facilitator).
REQUIREMENTS_MISMATCH = "requirements_mismatch"
REPLAYED = "invalid_exact_evm_nonce_already_used"
INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"

_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_TRANSFER_TYPEHASH = keccak(
    text="TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    "uint256 validBefore,bytes32 nonce)"
)
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_UINT = re.compile(r"^[0-9]{1,78}$")
_SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")
_CAIP2_EVM = re.compile(r"^eip155:([0-9]+)$")


class MalformedPayment(ValueError):
    """The PAYMENT-SIGNATURE header is not a decodable x402 v2 payload (answered 400 invalid_payload)."""


class PaymentRefused(Exception):
    """A well-formed payment that must not be accepted; ``reason`` is the x402 error code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Authorization:
    """A verified EIP-3009 authorization: who pays how much, under which nonce."""

    payer: str
    pay_to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str


def requirement(
    *, amount: int, pay_to: str, network: str, asset: str, extra: dict[str, str], max_timeout_seconds: int
) -> dict[str, Any]:
    """One ``accepts`` entry of a quote.

    Example:
        >>> requirement(amount=10000, pay_to="0x" + "1" * 40, network="eip155:8453", asset="0x" + "2" * 40,
        ...             extra={"name": "USD Coin", "version": "2"}, max_timeout_seconds=300)["amount"]
        '10000'
    """
    return {
        "scheme": "exact",
        "network": network,
        "amount": str(amount),
        "asset": asset,
        "payTo": pay_to,
        "maxTimeoutSeconds": max_timeout_seconds,
        "extra": dict(extra),
    }


def decode_payment(header: str) -> dict[str, Any]:
    """Decode a PAYMENT-SIGNATURE header into its payload, checking only its shape.

    Raises:
        MalformedPayment: not base64 JSON, not version 2, or missing the exact-EVM fields.
    """
    try:
        payload = decode_b64_json(header)
    except ValueError as exc:
        raise MalformedPayment(str(exc)) from exc
    if not isinstance(payload, dict) or payload.get("x402Version") != 2:
        raise MalformedPayment("not an x402 version 2 payment payload")
    accepted, inner = payload.get("accepted"), payload.get("payload")
    if not isinstance(accepted, dict) or not isinstance(inner, dict):
        raise MalformedPayment("payload lacks 'accepted' or 'payload'")
    auth, signature = inner.get("authorization"), inner.get("signature")
    if not isinstance(auth, dict) or not isinstance(signature, str):
        raise MalformedPayment("payload lacks an EIP-3009 authorization and signature")
    checks = (
        (_ADDRESS, auth.get("from")),
        (_ADDRESS, auth.get("to")),
        (_UINT, auth.get("value")),
        (_UINT, auth.get("validAfter")),
        (_UINT, auth.get("validBefore")),
        (_NONCE, auth.get("nonce")),
    )
    if not all(isinstance(v, str) and pattern.match(v) for pattern, v in checks):
        raise MalformedPayment("authorization fields are not well-formed")
    return payload


def _matches(accepted: dict[str, Any], quoted: dict[str, Any]) -> bool:
    """Exact match on every field, ``extra`` compared as a subset (the client may add keys)."""
    for key, value in quoted.items():
        if key == "extra":
            extra = accepted.get("extra")
            if not isinstance(extra, dict) or any(extra.get(k) != v for k, v in value.items()):
                return False
        elif accepted.get(key) != value:
            return False
    return True


def _uint256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def transfer_signable(
    *, name: str, version: str, chain_id: int, verifying_contract: str, auth: dict[str, str]
) -> SignableMessage:
    """The EIP-712 signable message of a ``TransferWithAuthorization`` (hashing done here, for speed)."""
    domain_separator = keccak(
        _DOMAIN_TYPEHASH
        + keccak(text=name)
        + keccak(text=version)
        + _uint256(chain_id)
        + _address_word(verifying_contract)
    )
    struct_hash = keccak(
        _TRANSFER_TYPEHASH
        + _address_word(auth["from"])
        + _address_word(auth["to"])
        + _uint256(int(auth["value"]))
        + _uint256(int(auth["validAfter"]))
        + _uint256(int(auth["validBefore"]))
        + bytes.fromhex(auth["nonce"][2:])
    )
    return SignableMessage(version=b"\x01", header=domain_separator, body=struct_hash)


def verify_payment(payload: dict[str, Any], quoted: dict[str, Any], now: float) -> Authorization:
    """Check a decoded payment against the requirement the server quoted for this very request.

    It checks everything a facilitator checks without a chain: scheme, network, the exact ``accepted`` echo,
    recipient, value, the validity window and the EIP-712 signature. Nonce reuse and balance are the ledger's.

    Raises:
        PaymentRefused: with the x402 reason code.
    """
    accepted = payload["accepted"]
    if accepted.get("scheme") != quoted["scheme"]:
        raise PaymentRefused(REQUIREMENTS_MISMATCH, f"scheme {accepted.get('scheme')!r} is not offered")
    if accepted.get("network") != quoted["network"]:
        raise PaymentRefused(REQUIREMENTS_MISMATCH, f"network {accepted.get('network')!r} is not offered")
    if not _matches(accepted, quoted):
        raise PaymentRefused(
            REQUIREMENTS_MISMATCH,
            "Signed payment requirements did not match any server-built requirement",
        )
    auth = payload["payload"]["authorization"]
    if auth["to"].lower() != quoted["payTo"].lower():
        raise PaymentRefused("invalid_exact_evm_recipient_mismatch", "authorization.to is not payTo")
    if int(auth["value"]) != int(quoted["amount"]):
        raise PaymentRefused(
            "invalid_exact_evm_payload_authorization_value_mismatch", "authorization.value is not the amount"
        )
    if int(auth["validBefore"]) < now + VALID_BEFORE_MARGIN_SECONDS:
        raise PaymentRefused(
            "invalid_exact_evm_payload_authorization_valid_before", "the authorization has expired"
        )
    if int(auth["validAfter"]) > now:
        raise PaymentRefused(
            "invalid_exact_evm_payload_authorization_valid_after", "the authorization is not valid yet"
        )
    signature = payload["payload"]["signature"]
    chain = _CAIP2_EVM.match(quoted["network"])
    if not _SIGNATURE.match(signature) or chain is None:
        raise PaymentRefused("invalid_exact_evm_signature", "the signature is not 65 bytes of hex")
    signable = transfer_signable(
        name=quoted["extra"]["name"],
        version=quoted["extra"]["version"],
        chain_id=int(chain.group(1)),
        verifying_contract=quoted["asset"],
        auth=auth,
    )
    try:
        signer = Account.recover_message(signable, signature=signature)
    except Exception as exc:  # eth-keys raises several types for an unrecoverable signature
        raise PaymentRefused("invalid_exact_evm_signature", "the signature does not recover") from exc
    if signer.lower() != auth["from"].lower():
        raise PaymentRefused(
            "invalid_exact_evm_signature", "the signature was not made by authorization.from"
        )
    return Authorization(
        payer=signer,
        pay_to=auth["to"],
        value=int(auth["value"]),
        valid_after=int(auth["validAfter"]),
        valid_before=int(auth["validBefore"]),
        nonce=auth["nonce"].lower(),
    )
