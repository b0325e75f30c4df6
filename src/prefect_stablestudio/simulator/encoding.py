"""Header encodings and timestamps shared by the routes."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any


def b64_json(value: Any) -> str:
    """Standard padded base64 of compact JSON, as x402 headers carry it.

    Example:
        >>> b64_json({"a": 1})
        'eyJhIjoxfQ=='
    """
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode("ascii")


def decode_b64_json(text: str) -> Any:
    """Decode a base64 JSON header, tolerating base64url and missing padding; ValueError when it is not one.

    Example:
        >>> decode_b64_json("eyJhIjoxfQ")
        {'a': 1}
    """
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
        return json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("not base64-encoded JSON") from exc


def iso(ts: float) -> str:
    """Unix time to ISO 8601 UTC with milliseconds and a ``Z`` (the form JavaScript servers send).

    Example:
        >>> iso(0)
        '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> float:
    """ISO 8601 (with ``Z`` or an offset) to unix time; ValueError when unparsable or naive.

    Example:
        >>> parse_iso("1970-01-01T00:00:01.500Z")
        1.5
    """
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a timezone")
    return parsed.timestamp()
