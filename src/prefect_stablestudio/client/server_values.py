"""Rules for values the server sends, checked before they are used in a URL, a download or a signature.

Every rule is a pure function that returns the value (or nothing) when it is safe and raises otherwise; a
refusal names the server's field and is raised before anything is signed on the strength of the value:

- `check_job_id`: an opaque token safe as ONE path segment (`/api/jobs/{id}`).
- `check_result_url`: a result, media or poll URL: https, or http on loopback; no userinfo.
- `check_siwx_challenge`: every sign-in-with-x field against the EIP-4361 grammar, and bound to our origin.
- `check_upload_ticket`: the paid upload ticket's pathname, client token and expiry.
- `check_mpp_challenge`: the fields of an MPP Tempo charge challenge.

Example:
    >>> from prefect_stablestudio.client.server_values import check_job_id, check_result_url
    >>> check_job_id("cmnms7w2m000304l4oz0ewji1")
    'cmnms7w2m000304l4oz0ewji1'
    >>> check_result_url("https://cdn.example/r.webp")
    'https://cdn.example/r.webp'
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from prefect_stablestudio.client.errors import UntrustedChallenge, UntrustedServerValue

__all__ = [
    "MAX_JOB_ID_CHARS",
    "SUPPORTED_SIWX_CHAINS",
    "check_challenge_origin",
    "check_job_id",
    "check_mpp_challenge",
    "check_result_url",
    "check_siwx_challenge",
    "check_upload_ticket",
    "client_token_expiry",
    "is_loopback_host",
    "origin_of",
    "parse_server_time",
]

MAX_JOB_ID_CHARS = 128
"""Real job ids are cuids (about 25 characters); anything much longer is not an id."""
SUPPORTED_SIWX_CHAINS = frozenset({"eip155:8453", "eip155:84532"})
"""Base mainnet and Base Sepolia: the chains a StableStudio sign-in names."""

# Letters, digits and the unreserved marks of RFC 3986 except "." (so "." and ".." can never be a segment).
_JOB_ID = re.compile(r"^[A-Za-z0-9_~-]+$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,128}$")
# RFC 3339 date-time, the profile of ISO 8601 that EIP-4361 names.
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")
_TOKEN = re.compile(r"^vercel_blob_client_[A-Za-z0-9]+_[A-Za-z0-9+/=_-]+$")
_PATHNAME_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f\\]+$")
_MAX_PATHNAME_CHARS = 950  # Vercel Blob's own limit
_MAX_TOKEN_CHARS = 8192
_LINE_BREAKS = ("\n", "\r", "\u0085", "\u2028", "\u2029")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in _LINE_BREAKS for c in text)


def _is_token(value: object) -> bool:
    """A non-empty string without whitespace or control characters."""
    return isinstance(value, str) and bool(value) and not _has_control(value) and " " not in value


def _show(value: object, limit: int = 80) -> str:
    return repr(str(value)[:limit])


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (the only hosts plain http is allowed to)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased the way browsers compare origins."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def check_job_id(value: object, field: str = "jobId") -> str:
    """A job id the server gave us, safe to put in a URL as one path segment.

    Job ids are opaque (cuids in production). Anything that could change the path or the query once pasted
    into `/api/jobs/{id}` is refused rather than escaped: `/`, `.`, `?`, `#`, `%`, whitespace and control
    characters, an empty id, and ids over `MAX_JOB_ID_CHARS`.

    Raises:
        UntrustedServerValue: the id is not such a token.

    Example:
        >>> check_job_id("../admin")
        Traceback (most recent call last):
        ...
        prefect_stablestudio.client.errors.UntrustedServerValue: server sent a jobId that is not ...
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_JOB_ID_CHARS or not _JOB_ID.match(value):
        raise UntrustedServerValue(
            f"server sent a {field} that is not an opaque id (letters, digits, _ ~ -; at most "
            f"{MAX_JOB_ID_CHARS} characters): {_show(value)}",
            field=field,
        )
    return value


def check_result_url(url: object, field: str = "result URL") -> str:
    """A URL the server told us to fetch (a result, a thumbnail, a poll URL), safe to request.

    https, or http only on loopback (127.0.0.0/8, ::1, localhost); a host is required; no userinfo
    (`user:pass@`, which hides the real host from a reader); no whitespace or control characters.

    Raises:
        UntrustedServerValue: the URL breaks a rule.

    Example:
        >>> check_result_url("http://127.0.0.1:8000/r.png")
        'http://127.0.0.1:8000/r.png'
    """
    if not isinstance(url, str) or not _is_token(url) or len(url) > 8192:
        raise UntrustedServerValue(f"server sent a {field} that is not a URL: {_show(url)}", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise UntrustedServerValue(f"server sent a malformed {field}: {_show(url)}", field=field) from None
    if not host:
        raise UntrustedServerValue(f"server sent a {field} without a host: {_show(url)}", field=field)
    if "@" in parts.netloc:
        raise UntrustedServerValue(f"server sent a {field} with credentials in it", field=field)
    scheme = parts.scheme.lower()
    if scheme == "https" or (scheme == "http" and is_loopback_host(host)):
        return url
    raise UntrustedServerValue(
        f"server sent a {field} that is not https (http only on loopback): {_show(url)}", field=field
    )


def check_challenge_origin(info: Mapping[str, Any], request_url: str) -> None:
    """Refuse a SIWX challenge whose domain or uri is not the origin we called (it could log us in elsewhere).

    The domain may be host:port or the bare host name (@agentcash/router sends the host name only); the
    uri's origin must be the request's origin exactly.

    Raises:
        UntrustedChallenge: domain or uri names another origin.
    """
    expected = urlsplit(request_url)
    domain = str(info.get("domain", "")).lower()
    uri = str(info.get("uri", ""))
    if domain not in (expected.netloc.lower(), (expected.hostname or "").lower()):
        raise UntrustedChallenge(
            f"challenge domain {_show(domain)} is not {expected.netloc!r}", field="domain"
        )
    if not urlsplit(uri).netloc or origin_of(uri) != origin_of(request_url):
        raise UntrustedChallenge(
            f"challenge uri {_show(uri, 120)} is not on {origin_of(request_url)}", field="uri"
        )


def check_siwx_challenge(info: Mapping[str, Any], request_url: str, chain_id: str) -> None:
    """Check every field of a sign-in-with-x challenge against EIP-4361 before anything is signed.

    The text a wallet signs is built line by line from these fields, so a field with a line break could add
    lines (another URI, another chain) to what the wallet agrees to. Rules: domain an authority bound to our
    origin and uri on our origin (`check_challenge_origin`); statement (optional) on one line; nonce at least
    8 alphanumerics; issuedAt, expirationTime and notBefore RFC 3339 (ISO 8601) times; version "1"; the chain
    one of `SUPPORTED_SIWX_CHAINS`; type (optional) "eip191"; requestId and resources without whitespace.

    Raises:
        UntrustedChallenge: a field breaks a rule (`field` names it).
    """

    def refuse(name: str, why: str) -> None:
        raise UntrustedChallenge(f"challenge {name} {why}: {_show(info.get(name))}", field=name)

    for name in ("domain", "uri", "nonce", "issuedAt"):
        if not isinstance(info.get(name), str):
            refuse(name, "is missing or not a string")
    for name, value in info.items():
        if isinstance(value, str) and any(c in value for c in _LINE_BREAKS):
            refuse(str(name), "contains a line break")
    if not _HOST.match(str(info["domain"])):
        refuse("domain", "is not a host[:port]")
    if not _is_token(info["uri"]):
        refuse("uri", "is not a URI")
    check_challenge_origin(info, request_url)
    statement = info.get("statement")
    if statement is not None and (not isinstance(statement, str) or _has_control(statement)):
        refuse("statement", "is not one line of text")
    if not _NONCE.match(str(info["nonce"])):
        refuse("nonce", "is not 8 to 128 letters and digits")
    for name in ("issuedAt", "expirationTime", "notBefore"):
        value = info.get(name)
        if (name == "issuedAt" or value is not None) and parse_server_time(value) is None:
            refuse(name, "is not an ISO-8601 (RFC 3339) time")
    if str(info.get("version", "1")) != "1":
        refuse("version", 'is not "1"')
    if chain_id not in SUPPORTED_SIWX_CHAINS:
        raise UntrustedChallenge(f"challenge chain {chain_id[:40]!r} is not supported", field="chainId")
    if info.get("type") not in (None, "eip191"):
        refuse("type", 'is not "eip191"')
    request_id = info.get("requestId")
    if request_id is not None and not _is_token(str(request_id)):
        refuse("requestId", "is not a token")
    resources = info.get("resources")
    if resources is not None and (
        not isinstance(resources, list) or not all(_is_token(r) for r in resources)
    ):
        refuse("resources", "is not a list of URIs")


def parse_server_time(value: object) -> datetime | None:
    """An RFC 3339 time the server sent, as an aware datetime; None when it is not one.

    Example:
        >>> parse_server_time("2026-12-04T10:00:00.123Z").isoformat()
        '2026-12-04T10:00:00.123000+00:00'
    """
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return None
    text = value.replace("Z", "+00:00")
    # Python parses at most 6 fractional digits; JavaScript and Go send up to 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def client_token_expiry(token: str) -> datetime | None:
    """The `validUntil` inside a Vercel Blob client token, or None when it cannot be read.

    The token is `vercel_blob_client_<store>_<base64("<hmac>.<base64(JSON payload)>")>`; the payload's
    `validUntil` is in milliseconds.
    """
    try:
        inner = base64.b64decode(token.split("_", 4)[4], validate=False).decode()
        payload = json.loads(base64.b64decode(inner.split(".", 1)[1]))
        valid_until = payload["validUntil"]
    except (IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError, binascii.Error):
        return None
    if isinstance(valid_until, bool) or not isinstance(valid_until, int | float):
        return None
    try:
        return datetime.fromtimestamp(valid_until / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def check_upload_ticket(
    upload_id: object, client_token: object, pathname: object, expires_at: object
) -> datetime | None:
    """Check a paid upload ticket (`POST /api/upload`) and return when it expires (None: not known).

    uploadId a token safe as one path segment; clientToken `vercel_blob_client_<store>_<payload>`; pathname
    relative segments (no `..`, no `//`, no query or fragment, at most 950 characters, Vercel's limit);
    `expiresAt` an RFC 3339 time when present. When `expiresAt` is missing or in another format, the
    token's own `validUntil` is the expiry.

    Raises:
        UntrustedServerValue: a field breaks a rule (`field` names it).
    """
    check_job_id(upload_id, "uploadId")
    if (
        not isinstance(client_token, str)
        or len(client_token) > _MAX_TOKEN_CHARS
        or not _TOKEN.match(client_token)
    ):
        raise UntrustedServerValue(
            "server sent a clientToken that is not a Vercel Blob client token", field="clientToken"
        )
    if (
        not isinstance(pathname, str)
        or not 0 < len(pathname) <= _MAX_PATHNAME_CHARS
        or pathname.startswith("/")
        or not all(seg not in ("", ".", "..") and _PATHNAME_SEGMENT.match(seg) for seg in pathname.split("/"))
    ):
        raise UntrustedServerValue(
            f"server sent an upload pathname that is not a relative blob path: {_show(pathname)}",
            field="pathname",
        )
    return parse_server_time(expires_at) or client_token_expiry(client_token)


def check_mpp_challenge(
    challenge_id: object, realm: object, expires: object, request: Mapping[str, Any]
) -> None:
    """Check the fields of an MPP Tempo charge challenge before it can be chosen.

    id a non-empty token without whitespace; realm a host[:port]; expires (optional) an RFC 3339 time;
    amount a decimal string of atomic units; currency and recipient 0x addresses; methodDetails (optional) an
    object. Whether the realm is ours and the amounts are acceptable is the policy's call (`check_offer`).

    Raises:
        UntrustedServerValue: a field breaks a rule (`field` names it).
    """
    if not _is_token(challenge_id):
        raise UntrustedServerValue("MPP challenge id is not a token", field="id")
    if not isinstance(realm, str) or not _HOST.match(realm):
        raise UntrustedServerValue(f"MPP challenge realm is not a host: {_show(realm)}", field="realm")
    if expires is not None and parse_server_time(expires) is None:
        raise UntrustedServerValue(f"MPP challenge expires is not a time: {_show(expires)}", field="expires")
    amount = request.get("amount")
    if not isinstance(amount, str) or not re.fullmatch(r"[0-9]{1,78}", amount):
        raise UntrustedServerValue(f"MPP amount is not atomic units: {_show(amount)}", field="amount")
    for name in ("currency", "recipient"):
        value = request.get(name)
        if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise UntrustedServerValue(f"MPP {name} is not an address: {_show(value)}", field=name)
    details = request.get("methodDetails")
    if details is not None and not isinstance(details, Mapping):
        raise UntrustedServerValue("MPP methodDetails is not an object", field="methodDetails")
