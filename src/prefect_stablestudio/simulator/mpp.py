"""MPP (Machine Payments Protocol) Tempo charge, server side: issue the challenge, verify the credential.

Written from the wire format, not from a client library: the challenge is ``WWW-Authenticate: Payment id=..,
realm=.., method="tempo", intent="charge", request=<base64url JSON>, expires=..`` with an HMAC-bound id; the
credential is ``Authorization: Payment <base64url JSON {challenge, payload: {type: "transaction",
signature: "0x76.."}, source}>``. The transaction is decoded here (RLP), its sender recovered from the
secp256k1 signature over ``keccak(0x76 || rlp(first 13 fields))``, and its single TIP-20 call checked
against the quote.

Example:
    >>> from prefect_stablestudio.simulator.mpp import tempo_request
    >>> tempo_request(45_000, "0x" + "2" * 40, "0x" + "9" * 40, 4217)["amount"]
    '45000'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_hash.auto import keccak
from eth_keys.datatypes import Signature

TRANSFER = bytes.fromhex("a9059cbb")
TRANSFER_WITH_MEMO = bytes.fromhex("95777d59")
EXPIRING_NONCE_KEY = (1 << 256) - 1
_SENDER_FIELDS = 13


class MppRefused(Exception):
    """The credential does not pay this quote: ``reason`` is our code, ``problem`` the RFC 9457 type."""

    def __init__(self, reason: str, message: str, problem: str = "verification-failed") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.problem = problem


@dataclass(frozen=True)
class TempoCharge:
    """A verified Tempo charge: who pays, how much, and the transaction hash (its replay key)."""

    payer: str
    value: int
    nonce: str
    network: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _canonical(value: Any) -> bytes:
    # Sorted keys and no whitespace: JCS for the plain strings and ints a charge request holds.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tempo_request(amount: int, currency: str, recipient: str, chain_id: int) -> dict[str, Any]:
    """The decoded ``request`` of a Tempo charge challenge."""
    return {
        "amount": str(amount),
        "currency": currency,
        "recipient": recipient,
        "methodDetails": {"chainId": chain_id},
    }


def _challenge_id(secret: str, realm: str, request_b64: str, expires: str) -> str:
    material = "|".join((realm, "tempo", "charge", request_b64, expires, "", ""))
    return _b64url(hmac.new(secret.encode(), material.encode(), hashlib.sha256).digest())


def challenge_header(secret: str, realm: str, request: dict[str, Any], expires_at: float) -> str:
    """The ``WWW-Authenticate`` value offering ``request`` until ``expires_at`` (unix seconds)."""
    request_b64 = _b64url(_canonical(request))
    expires = datetime.fromtimestamp(int(expires_at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cid = _challenge_id(secret, realm, request_b64, expires)
    return (
        f'Payment id="{cid}", realm="{realm}", method="tempo", intent="charge", '
        f'request="{request_b64}", expires="{expires}"'
    )


def credential_of(authorization: str | None) -> str | None:
    """The base64url token of an ``Authorization: Payment <token>`` header, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "payment" and token.strip() else None


def _decode_credential(token: str) -> dict[str, Any]:
    if len(token) > 65536:
        raise _malformed("credential over 64 KiB")
    try:
        data = json.loads(_unb64url(token))
    except (ValueError, UnicodeDecodeError):
        raise _malformed("credential is not base64url JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("challenge"), dict):
        raise _malformed("credential has no challenge")
    if not isinstance(data.get("payload"), dict):
        raise _malformed("credential has no payload")
    return data


def _check_challenge(echo: dict[str, Any], secret: str, realm: str, quote: dict[str, Any], now: float) -> int:
    """Check the echoed challenge is ours, unexpired and for this quote; returns its expiry (unix)."""
    fields = {k: echo.get(k) for k in ("id", "realm", "method", "intent", "request", "expires")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise MppRefused("invalid_challenge", "challenge echo is incomplete", "invalid-challenge")
    expected = _challenge_id(secret, str(fields["realm"]), str(fields["request"]), str(fields["expires"]))
    if fields["realm"] != realm or not hmac.compare_digest(expected, str(fields["id"])):
        raise MppRefused("invalid_challenge", "challenge was not issued here", "invalid-challenge")
    if fields["method"] != "tempo" or fields["intent"] != "charge":
        raise MppRefused("method_unsupported", "only tempo/charge is accepted", "method-unsupported")
    try:
        expires = int(datetime.fromisoformat(str(fields["expires"]).replace("Z", "+00:00")).timestamp())
        request = json.loads(_unb64url(str(fields["request"])))
    except ValueError:
        raise MppRefused("invalid_challenge", "challenge echo is malformed", "invalid-challenge") from None
    if expires <= now:
        raise MppRefused("payment_expired", "the challenge has expired", "payment-expired")
    if request != quote:
        raise MppRefused("invalid_challenge", "challenge is for another price", "invalid-challenge")
    return expires


def _malformed(message: str) -> MppRefused:
    return MppRefused("malformed_credential", message, "malformed-credential")


def _int(field: Any) -> int:
    if not isinstance(field, bytes):
        raise _malformed("transaction field is not an integer")
    return int.from_bytes(field, "big")


def _decode_transaction(raw_hex: Any) -> tuple[list[Any], bytes]:
    if not isinstance(raw_hex, str) or not raw_hex.startswith("0x76"):
        raise _malformed("payload is not a Tempo 0x76 transaction")
    try:
        raw = bytes.fromhex(raw_hex[2:])
        fields = rlp.decode(raw[1:])
    except (ValueError, rlp.DecodingError):
        raise _malformed("transaction is not RLP") from None
    if not isinstance(fields, list) or len(fields) != _SENDER_FIELDS + 1:
        # 14 fields: no key authorization (access keys are not simulated).
        raise _malformed("unexpected transaction shape")
    return fields, raw


def _recover_sender(fields: list[Any]) -> str:
    signature = fields[-1]
    if fields[11] != b"" or not isinstance(signature, bytes) or len(signature) != 65:
        # A fee-payer envelope (sponsored charge) is never offered here.
        raise MppRefused("invalid_signature", "transaction lacks a plain sender signature")
    digest = keccak(b"\x76" + rlp.encode(fields[:_SENDER_FIELDS]))
    v = signature[64] - 27 if signature[64] >= 27 else signature[64]
    try:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
        sig = Signature(vrs=(v, r, s))
        return str(sig.recover_public_key_from_msg_hash(digest).to_checksum_address())
    except Exception:  # eth_keys raises several types for a bad signature
        raise MppRefused("invalid_signature", "sender signature does not recover") from None


def verify_charge(
    authorization: str,
    *,
    secret: str,
    realm: str,
    quote: dict[str, Any],
    now: float,
) -> TempoCharge:
    """Verify an MPP Tempo charge credential against ``quote`` (the request the route asks for now).

    Raises:
        MppRefused: the credential is malformed, not ours, expired, or the transaction does not pay the quote.
    """
    token = credential_of(authorization)
    if token is None:
        raise _malformed("not a Payment credential")
    credential = _decode_credential(token)
    expires = _check_challenge(credential["challenge"], secret, realm, quote, now)
    payload = credential["payload"]
    if payload.get("type") != "transaction":
        raise MppRefused("payload_unsupported", "only transaction payloads are accepted")
    fields, raw = _decode_transaction(payload.get("signature"))
    chain_id = int(quote["methodDetails"]["chainId"])
    if _int(fields[0]) != chain_id:
        raise MppRefused("chain_mismatch", f"transaction is not for chain {chain_id}")
    if _int(fields[6]) != EXPIRING_NONCE_KEY or _int(fields[7]) != 0:
        raise MppRefused("nonce_unsupported", "transaction must use an expiring nonce")
    valid_before = _int(fields[8])
    if valid_before <= now or valid_before > expires + 1:
        raise MppRefused("transaction_expired", "validBefore is past or beyond the challenge expiry")
    calls = fields[4]
    if not isinstance(calls, list) or len(calls) != 1 or not isinstance(calls[0], list) or len(calls[0]) != 3:
        raise MppRefused("calls_mismatch", "transaction must make exactly one call")
    to, value, data = calls[0]
    if not isinstance(to, bytes) or "0x" + to.hex() != str(quote["currency"]).lower():
        raise MppRefused("currency_mismatch", "transaction does not call the quoted currency")
    if not isinstance(data, bytes) or data[:4] not in (TRANSFER, TRANSFER_WITH_MEMO) or _int(value) != 0:
        raise MppRefused("calls_mismatch", "call is not a TIP-20 transfer")
    recipient = "0x" + data[4:36][-20:].hex()
    amount = int.from_bytes(data[36:68], "big")
    if recipient != str(quote["recipient"]).lower():
        raise MppRefused("recipient_mismatch", "transfer goes to another recipient")
    if amount != int(quote["amount"]):
        raise MppRefused("amount_mismatch", f"transfer moves {amount}, the quote is {quote['amount']}")
    payer = _recover_sender(fields)
    source = credential.get("source")
    if isinstance(source, str) and not source.lower().endswith(payer.lower()):
        raise MppRefused("source_mismatch", "credential source is not the transaction sender")
    return TempoCharge(
        payer=payer, value=amount, nonce="0x" + keccak(raw).hex(), network=f"tempo:{chain_id}"
    )


def receipt_header(reference: str, now: float) -> str:
    """The ``Payment-Receipt`` value for a settled charge (``reference`` is the transaction hash)."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    receipt = {"status": "success", "method": "tempo", "timestamp": stamp, "reference": reference}
    return _b64url(_canonical(receipt))
