"""Sign-In-With-X (CAIP-122 / EIP-4361 over EIP-191), the pure part: parse, check, format, sign, encode.

Two ways to get a proof: sign the server's challenge (after `server_values.check_siwx_challenge` checked every
field and that it names the origin we called), or make a proof with a fresh random nonce of our own, which
saves a round trip on servers that accept any unused nonce.

Example:
    >>> from prefect_stablestudio.client.siwx import eip4361_message
    >>> text = eip4361_message({"domain": "stablestudio.dev", "uri": "https://stablestudio.dev/api/jobs/1",
    ...     "version": "1", "chainId": "eip155:8453", "nonce": "abcdef0123456789",
    ...     "issuedAt": "2026-01-01T00:00:00.000Z"}, "0x0000000000000000000000000000000000000001")
    >>> text.splitlines()[0]
    'stablestudio.dev wants you to sign in with your Ethereum account:'
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict

from prefect_stablestudio.client.encoding import encode_b64_json
from prefect_stablestudio.client.errors import ProtocolError
from prefect_stablestudio.client.signer import Signer, as_signer

__all__ = [
    "SIWX_EXTENSION",
    "SIWX_HEADER",
    "SiwxChallenge",
    "client_nonce_info",
    "eip4361_message",
    "encode_proof",
    "parse_challenge",
    "sign_proof",
]

SIWX_EXTENSION = "sign-in-with-x"
SIWX_HEADER = "SIGN-IN-WITH-X"
BASE_CHAIN = "eip155:8453"
DEFAULT_STATEMENT = "Sign in to verify your wallet identity"
_CHAIN = re.compile(r"^eip155:([0-9]+)$")
# Fields a proof echoes from the challenge, in the order we write them.
_ECHOED = (
    "domain",
    "statement",
    "uri",
    "version",
    "chainId",
    "type",
    "nonce",
    "issuedAt",
    "expirationTime",
    "notBefore",
    "requestId",
    "resources",
)


class SiwxChallenge(BaseModel):
    """The server's `sign-in-with-x` extension: `info` exactly as received, and the chain we sign for."""

    model_config = ConfigDict(frozen=True)

    info: dict[str, Any]
    chain_id: str
    type: str = "eip191"


def parse_challenge(payment_required: Mapping[str, Any]) -> SiwxChallenge | None:
    """The SIWX challenge in a decoded 402 (PaymentRequired JSON), or None if it carries none.

    Raises:
        ProtocolError: the extension is present but unusable (no info, or no EVM eip191 chain).
    """
    extensions = payment_required.get("extensions")
    if not isinstance(extensions, Mapping) or SIWX_EXTENSION not in extensions:
        return None
    ext = extensions[SIWX_EXTENSION]
    info = ext.get("info") if isinstance(ext, Mapping) else None
    if not isinstance(info, Mapping) or not isinstance(info.get("nonce"), str):
        raise ProtocolError("sign-in-with-x challenge has no usable info")
    chains = [
        c
        for c in (ext.get("supportedChains") or [])
        if isinstance(c, Mapping) and c.get("type") == "eip191" and _CHAIN.match(str(c.get("chainId", "")))
    ]
    declared = info.get("chainId")
    if isinstance(declared, str) and _CHAIN.match(declared):
        chain = declared
    elif chains:
        chain = next(
            (str(c["chainId"]) for c in chains if c["chainId"] == BASE_CHAIN), str(chains[0]["chainId"])
        )
    else:
        raise ProtocolError("sign-in-with-x challenge offers no EVM (eip191) chain")
    return SiwxChallenge(info=dict(info), chain_id=chain)


def eip4361_message(fields: Mapping[str, Any], address: str) -> str:
    """The EIP-4361 text for `fields` (challenge info or proof), with every string echoed exactly.

    Raises:
        ProtocolError: chainId is not eip155:<n>.
    """
    match = _CHAIN.match(str(fields.get("chainId", "")))
    if not match:
        raise ProtocolError("sign-in-with-x chainId is not eip155:<number>")
    head = f"{fields['domain']} wants you to sign in with your Ethereum account:\n{address}\n\n"
    statement = fields.get("statement")
    # EIP-4361 keeps the blank line after the address whether or not a statement follows.
    head += f"{statement}\n\n" if statement is not None else "\n"
    lines = [
        f"URI: {fields['uri']}",
        f"Version: {fields.get('version', '1')}",
        f"Chain ID: {match.group(1)}",
        f"Nonce: {fields['nonce']}",
        f"Issued At: {fields['issuedAt']}",
    ]
    if fields.get("expirationTime"):
        lines.append(f"Expiration Time: {fields['expirationTime']}")
    if fields.get("notBefore"):
        lines.append(f"Not Before: {fields['notBefore']}")
    if fields.get("requestId") is not None:
        lines.append(f"Request ID: {fields['requestId']}")
    resources = fields.get("resources")
    if resources is not None:
        lines.append("\n".join(["Resources:", *(f"- {r}" for r in resources)]))
    return head + "\n".join(lines)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def client_nonce_info(request_url: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Challenge-shaped info made by the client, with a fresh random nonce, for `request_url`.

    `now` is the issue time; pass the server's clock (`Session.server_now`) so that a wrong local clock
    does not make the server see a proof issued in its future or already expired.
    """
    moment = now or datetime.now(UTC)
    # Truncating to milliseconds keeps issuedAt at or before the server's "now".
    return {
        "domain": urlsplit(request_url).netloc,
        "statement": DEFAULT_STATEMENT,
        "uri": request_url,
        "version": "1",
        "chainId": BASE_CHAIN,
        "type": "eip191",
        "nonce": secrets.token_hex(16),
        "issuedAt": _iso(moment),
        "expirationTime": _iso(moment + timedelta(minutes=5)),
    }


def sign_proof(
    account: Signer | LocalAccount, info: Mapping[str, Any], *, chain_id: str | None = None
) -> dict[str, Any]:
    """Sign `info` (a checked challenge, or `client_nonce_info`) and return the proof JSON.

    Unknown challenge fields are not echoed; the known ones are copied exactly as received. `account` is
    best a `Signer` (the key parsed once); a `LocalAccount` gives the same signature, slower.
    """
    signer = as_signer(account)
    fields: dict[str, Any] = {k: info[k] for k in _ECHOED if info.get(k) is not None}
    fields["chainId"] = chain_id or str(info.get("chainId") or BASE_CHAIN)
    fields["type"] = "eip191"
    fields.setdefault("version", "1")
    text = eip4361_message(fields, signer.address)
    signature = signer.sign_personal_message(text)
    return {**fields, "address": signer.address, "signature": "0x" + signature.hex()}


def encode_proof(proof: Mapping[str, Any]) -> str:
    """The `SIGN-IN-WITH-X` header value: standard base64 of the proof JSON."""
    return encode_b64_json(dict(proof))
