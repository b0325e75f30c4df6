"""Sign-In-With-X, the server side: challenges, the EIP-4361 text, proof verification, nonce bookkeeping."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct

from prefect_stablestudio.simulator.encoding import decode_b64_json, iso, parse_iso

SIWX_TTL_SECONDS = 300
SIWX_STATEMENT = "Sign in to verify your wallet identity"
# Clocks of client and server may differ a little even on one machine's containers.
ISSUED_AT_FUTURE_TOLERANCE_SECONDS = 5
_REQUIRED = ("domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt", "signature")


class SiwxRefused(Exception):
    """A SIWX proof that does not authenticate; ``reason`` is one of the ``siwx_*`` codes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def siwe_message(proof: dict[str, Any]) -> str:
    """The EIP-4361 text a proof's signature covers, rebuilt from its echoed fields exactly as received.

    Example:
        >>> print(siwe_message({"domain": "h:1", "address": "0xA", "uri": "http://h:1/x", "version": "1",
        ...     "chainId": "eip155:8453", "nonce": "n", "issuedAt": "t"}))
        h:1 wants you to sign in with your Ethereum account:
        0xA
        <BLANKLINE>
        URI: http://h:1/x
        Version: 1
        Chain ID: 8453
        Nonce: n
        Issued At: t
    """
    lines = [f"{proof['domain']} wants you to sign in with your Ethereum account:", proof["address"], ""]
    if proof.get("statement"):
        lines += [proof["statement"], ""]
    lines += [
        f"URI: {proof['uri']}",
        f"Version: {proof['version']}",
        f"Chain ID: {str(proof['chainId']).removeprefix('eip155:')}",
        f"Nonce: {proof['nonce']}",
        f"Issued At: {proof['issuedAt']}",
    ]
    if proof.get("expirationTime"):
        lines.append(f"Expiration Time: {proof['expirationTime']}")
    if proof.get("notBefore"):
        lines.append(f"Not Before: {proof['notBefore']}")
    if proof.get("requestId"):
        lines.append(f"Request ID: {proof['requestId']}")
    if proof.get("resources"):
        lines.append("Resources:")
        lines += [f"- {r}" for r in proof["resources"]]
    return "\n".join(lines)


class SiwxVerifier:
    """Issues challenges and verifies proofs for one origin; nonces are single use (thread-safe).

    The ``domain`` is the origin's host:port (EIP-4361's authority), or with ``domain_with_port=False`` the
    host name alone, as @agentcash/router writes it (the same thing on ports 80 and 443).

    Example:
        >>> v = SiwxVerifier("http://127.0.0.1:8000", network="eip155:8453", accept_client_nonce=True)
        >>> v.challenge("http://127.0.0.1:8000/api/jobs/1")["extensions"]["sign-in-with-x"]["info"]["domain"]
        '127.0.0.1:8000'
    """

    def __init__(
        self, origin: str, *, network: str, accept_client_nonce: bool, domain_with_port: bool = True
    ) -> None:
        self.origin = origin
        parts = urlsplit(origin)
        self.domain = parts.netloc if domain_with_port else (parts.hostname or "")
        self.network = network
        self.accept_client_nonce = accept_client_nonce
        self._lock = threading.Lock()
        self._issued: dict[str, float] = {}
        self._used: dict[str, float] = {}

    def challenge(self, resource_url: str, description: str = "Wallet sign-in") -> dict[str, Any]:
        """A fresh SIWX-only PaymentRequired for ``resource_url`` (sent in the body and the header)."""
        now = time.time()
        nonce = secrets.token_hex(16)
        with self._lock:
            self._prune(now)
            self._issued[nonce] = now + SIWX_TTL_SECONDS
        info = {
            "domain": self.domain,
            "uri": resource_url,
            "version": "1",
            "chainId": self.network,
            "type": "eip191",
            "nonce": nonce,
            "issuedAt": iso(now),
            "expirationTime": iso(now + SIWX_TTL_SECONDS),
            "statement": SIWX_STATEMENT,
        }
        return {
            "x402Version": 2,
            "error": "SIWX authentication required",
            "resource": {
                "url": resource_url,
                "description": description,
                "mimeType": "application/json",
            },
            "accepts": [],
            "extensions": {
                "sign-in-with-x": {
                    "info": info,
                    "supportedChains": [{"chainId": self.network, "type": "eip191"}],
                }
            },
        }

    def verify(self, header: str) -> str:
        """Verify a ``SIGN-IN-WITH-X`` header and consume its nonce; return the signing address.

        Raises:
            SiwxRefused: malformed, for another origin, expired, signed by someone else, or a used nonce.
        """
        now = time.time()
        proof = self._parse(header)
        if proof["domain"] != self.domain:
            # The router's code for a proof for another domain (it fails its message check).
            raise SiwxRefused("siwx_malformed", f"domain must be {self.domain}")
        uri = urlsplit(proof["uri"])
        if f"{uri.scheme}://{uri.netloc}" != self.origin:
            raise SiwxRefused("siwx_malformed", f"uri must be on {self.origin}")
        if proof["chainId"] != self.network or proof["type"] != "eip191" or proof["version"] != "1":
            raise SiwxRefused("siwx_malformed", f"only version 1, {self.network}, eip191 are supported")
        self._check_times(proof, now)
        try:
            signer = Account.recover_message(
                encode_defunct(text=siwe_message(proof)), signature=proof["signature"]
            )
        except Exception as exc:  # eth-keys raises several types for an unrecoverable signature
            raise SiwxRefused("siwx_invalid_signature", "the signature does not recover") from exc
        if signer.lower() != proof["address"].lower():
            raise SiwxRefused("siwx_invalid_signature", "the signature was not made by address")
        self._consume(proof["nonce"], now)
        return str(signer)

    def _parse(self, header: str) -> dict[str, Any]:
        try:
            proof = decode_b64_json(header)
        except ValueError as exc:
            raise SiwxRefused("siwx_malformed", "SIGN-IN-WITH-X is not base64 JSON") from exc
        if not isinstance(proof, dict) or not all(isinstance(proof.get(k), str) for k in _REQUIRED):
            raise SiwxRefused("siwx_malformed", f"a proof needs the string fields {', '.join(_REQUIRED)}")
        resources = proof.get("resources")
        if resources is not None and not (
            isinstance(resources, list) and all(isinstance(r, str) for r in resources)
        ):
            raise SiwxRefused("siwx_malformed", "resources must be a list of strings")
        return proof

    @staticmethod
    def _check_times(proof: dict[str, Any], now: float) -> None:
        try:
            issued = parse_iso(proof["issuedAt"])
            expires = parse_iso(proof["expirationTime"]) if proof.get("expirationTime") else None
            not_before = parse_iso(proof["notBefore"]) if proof.get("notBefore") else None
        except (ValueError, TypeError) as exc:
            raise SiwxRefused("siwx_malformed", "timestamps must be ISO 8601 with a timezone") from exc
        if issued > now + ISSUED_AT_FUTURE_TOLERANCE_SECONDS:
            raise SiwxRefused("siwx_expired", "issuedAt is in the future")
        if now - issued > SIWX_TTL_SECONDS:
            raise SiwxRefused("siwx_expired", "issuedAt is more than 5 minutes old")
        if expires is not None and expires <= now:
            raise SiwxRefused("siwx_expired", "expirationTime has passed")
        if not_before is not None and not_before > now:
            raise SiwxRefused("siwx_expired", "notBefore is in the future")

    def _consume(self, nonce: str, now: float) -> None:
        with self._lock:
            self._prune(now)
            if nonce in self._used:
                raise SiwxRefused("siwx_nonce_used", "this nonce was already used")
            issued = self._issued.pop(nonce, None)
            if issued is None and not self.accept_client_nonce:
                raise SiwxRefused("siwx_nonce_used", "this nonce was not issued by the server or was used")
            # A used nonce must be remembered as long as a proof carrying it could still pass the age check.
            self._used[nonce] = now + SIWX_TTL_SECONDS + ISSUED_AT_FUTURE_TOLERANCE_SECONDS

    def _prune(self, now: float) -> None:
        if len(self._issued) + len(self._used) < 10_000:
            return
        self._issued = {n: t for n, t in self._issued.items() if t > now}
        self._used = {n: t for n, t in self._used.items() if t > now}
