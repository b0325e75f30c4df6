"""Base64 JSON as x402 headers carry it: encode standard padded base64, decode tolerantly.

Example:
    >>> from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
    >>> decode_b64_json(encode_b64_json({"a": 1}))
    {'a': 1}
    >>> decode_b64_json("eyJhIjoxfQ")  # missing padding is fine
    {'a': 1}
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from prefect_stablestudio.client.errors import ProtocolError

__all__ = ["MAX_HEADER_CHARS", "canonical_json", "decode_b64_json", "encode_b64_json"]

# Real x402 and SIWX headers are a few KiB. A server that sends more is broken or hostile: what it asks us to
# sign (and echo back in PAYMENT-SIGNATURE) would not fit in a request header anyway.
MAX_HEADER_CHARS = 64 * 1024


def canonical_json(value: Any) -> bytes:
    """Compact UTF-8 JSON: the exact bytes we send, so a body hash is stable across re-sends."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_b64_json(value: Any) -> str:
    """Encode `value` as standard RFC 4648 base64 (with padding) of compact JSON."""
    return base64.b64encode(canonical_json(value)).decode("ascii")


def decode_b64_json(text: str) -> Any:
    """Decode base64 JSON, accepting the standard and URL-safe alphabets and missing padding.

    Raises:
        ProtocolError: the text is longer than `MAX_HEADER_CHARS`, or not base64 of UTF-8 JSON.
    """
    if len(text) > MAX_HEADER_CHARS:
        raise ProtocolError(f"header is too large: {len(text)} characters (limit {MAX_HEADER_CHARS})")
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"header is not base64 JSON: {type(exc).__name__}") from None
