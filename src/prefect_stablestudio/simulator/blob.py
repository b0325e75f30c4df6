"""The stand-in for Vercel Blob: client tokens (HMAC, as Vercel issues them) and an in-memory store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

STORE_ID = "simstore"
TOKEN_PREFIX = f"vercel_blob_client_{STORE_ID}_"
IMAGE_CONTENT_TYPES = ("image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp")


class BlobRefused(Exception):
    """A blob PUT that must fail; ``code`` is Vercel's error code and ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Blob:
    """Stored bytes with their metadata."""

    pathname: str
    content_type: str
    data: bytes
    etag: str
    uploaded_at: float


def _content_types_equal(a: str, b: str) -> bool:
    aliases = {"image/jpg": "image/jpeg"}
    return aliases.get(a, a) == aliases.get(b, b)


class BlobStore:
    """Issues and checks client tokens and keeps uploaded bytes in memory (thread-safe).

    Example:
        >>> store = BlobStore()
        >>> token = store.issue_token("uploads/1/a.png", ["image/png"], 10, valid_until=time.time() + 60)
        >>> store.put(token, "uploads/1/a.png", "image/png", b"\\x89PNG").pathname
        'uploads/1/a.png'
    """

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._blobs: dict[str, Blob] = {}

    def issue_token(
        self, pathname: str, allowed_content_types: list[str], maximum_size: int, *, valid_until: float
    ) -> str:
        """A client token in Vercel's format: ``vercel_blob_client_<store>_<b64("<hmac>.<b64(json)>")>``."""
        payload = {
            "pathname": pathname,
            "validUntil": int(valid_until * 1000),
            "allowedContentTypes": allowed_content_types,
            "maximumSizeInBytes": maximum_size,
        }
        encoded = base64.b64encode(json.dumps(payload).encode()).decode()
        signature = hmac.new(self._secret, encoded.encode(), hashlib.sha256).hexdigest()
        return TOKEN_PREFIX + base64.b64encode(f"{signature}.{encoded}".encode()).decode()

    def _token_payload(self, token: str) -> dict[str, Any]:
        if not token.startswith(TOKEN_PREFIX):
            raise BlobRefused("forbidden", "Invalid token", 403)
        try:
            signature, encoded = base64.b64decode(token[len(TOKEN_PREFIX) :]).decode().split(".", 1)
            expected = hmac.new(self._secret, encoded.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature, expected):
                raise BlobRefused("forbidden", "Invalid token", 403)
            payload = json.loads(base64.b64decode(encoded))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BlobRefused("forbidden", "Invalid token", 403) from exc
        if not isinstance(payload, dict):
            raise BlobRefused("forbidden", "Invalid token", 403)
        return payload

    def put(self, token: str, pathname: str, content_type: str, data: bytes) -> Blob:
        """Check the token against this PUT and store the bytes.

        Raises:
            BlobRefused: forbidden, client_token_expired, client_token_pathname_mismatch,
                content_type_not_allowed or file_too_large.
        """
        payload = self._token_payload(token)
        if payload.get("validUntil", 0) < time.time() * 1000:
            raise BlobRefused("client_token_expired", "Token expired", 403)
        if payload.get("pathname") != pathname:
            raise BlobRefused(
                "client_token_pathname_mismatch",
                f'"pathname" {pathname} does not match the token payload',
                400,
            )
        allowed = payload.get("allowedContentTypes") or []
        if not any(_content_types_equal(content_type, a) for a in allowed):
            raise BlobRefused("content_type_not_allowed", f"contentType {content_type} is not allowed", 400)
        if len(data) > int(payload.get("maximumSizeInBytes", 0)):
            raise BlobRefused(
                "file_too_large",
                f"File size exceeds the limit: the file length cannot be greater than "
                f"{payload.get('maximumSizeInBytes')} bytes",
                400,
            )
        blob = Blob(pathname, content_type, data, '"' + hashlib.md5(data).hexdigest() + '"', time.time())  # noqa: S324
        with self._lock:
            self._blobs[pathname] = blob
        return blob

    def get(self, pathname: str) -> Blob | None:
        """The blob at ``pathname``, if it was uploaded."""
        with self._lock:
            return self._blobs.get(pathname)

    def clear(self) -> None:
        """Forget every blob."""
        with self._lock:
            self._blobs.clear()
