"""Base64 JSON headers: standard out, tolerant in."""

from __future__ import annotations

import base64
import json

import pytest

from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
from prefect_stablestudio.client.errors import ProtocolError

# ">>?" encodes to "Pj4/" in the standard alphabet and "Pj4_" in base64url: a value that tells them apart.
VALUE = {"k": ">>?", "n": 1, "u": "é"}


def test_encode_is_standard_padded_base64_of_compact_json() -> None:
    encoded = encode_b64_json({"a": ">>?"})
    assert "-" not in encoded and "_" not in encoded
    assert len(encoded) % 4 == 0
    assert base64.b64decode(encoded, validate=True) == b'{"a":">>?"}'


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: s,
        lambda s: s.rstrip("="),
        lambda s: s.replace("+", "-").replace("/", "_"),
        lambda s: s.replace("+", "-").replace("/", "_").rstrip("="),
    ],
    ids=["standard", "no-padding", "base64url", "base64url-no-padding"],
)
def test_decode_tolerates_url_alphabet_and_missing_padding(transform) -> None:  # type: ignore[no-untyped-def]
    standard = base64.b64encode(json.dumps(VALUE).encode()).decode()
    assert "/" in standard or "+" in standard
    assert decode_b64_json(transform(standard)) == VALUE


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"not json").decode(), "////"])
def test_decode_rejects_garbage_with_protocol_error(bad: str) -> None:
    with pytest.raises(ProtocolError):
        decode_b64_json(bad)
