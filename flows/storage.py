"""Reading inputs and writing results through fsspec: local paths, s3:// (s3fs) or any other fsspec URL.

fsspec calls are blocking; they run in a worker thread so a flow's event loop keeps serving other edits.
`storage_options` go to fsspec unchanged, e.g. `{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}`
for MinIO, or `{"profile": "prod"}`.

Example:
    ```python
    from flows.storage import read_input, write_bytes

    source = await read_input("s3://photos/cat.png")
    uri = await write_bytes(source.data, "s3://edits/cat.png")
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.core import url_to_fs

__all__ = [
    "InputImage",
    "StorageOptions",
    "content_type_for",
    "exists_with_checksum",
    "join_uri",
    "presign",
    "read_bytes",
    "read_input",
    "sha256_hex",
    "write_bytes",
]

StorageOptions = dict[str, Any]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class InputImage:
    """An input image, read once: where it came from, its bytes and their checksum."""

    uri: str
    data: bytes
    sha256: str
    filename: str
    content_type: str


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data`, hex."""
    return hashlib.sha256(data).hexdigest()


def content_type_for(data: bytes, name: str = "") -> str:
    """The image MIME type, from the bytes' signature first and the name's extension second."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def join_uri(folder: str, name: str) -> str:
    """`folder` + `name` for local paths and URLs alike."""
    if _is_local(folder) and not folder.startswith("file://"):
        return str(Path(folder) / name)
    return folder.rstrip("/") + "/" + name


def _read(uri: str, options: StorageOptions) -> bytes:
    with fsspec.open(uri, "rb", **options) as handle:
        data: bytes = handle.read()
        return data


async def read_bytes(uri: str, storage_options: StorageOptions | None = None) -> bytes:
    """All bytes at `uri` (a local path or any fsspec URL)."""
    return await asyncio.to_thread(_read, uri, dict(storage_options or {}))


async def read_input(
    source: str | os.PathLike[str] | bytes, storage_options: StorageOptions | None = None, *, name: str = ""
) -> InputImage:
    """Read an input image from a path, an fsspec URL or raw bytes.

    Args:
        source: a local path, an fsspec URL such as s3://bucket/key.png, or the image bytes.
        storage_options: fsspec options for URLs.
        name: a file name for raw bytes (its extension helps the content type); default `image`.
    """
    if isinstance(source, bytes):
        digest = sha256_hex(source)
        filename = name or "image"
        return InputImage(f"bytes:{digest}", source, digest, filename, content_type_for(source, filename))
    uri = os.fspath(source)
    data = await read_bytes(uri, storage_options)
    filename = PurePosixPath(uri.split("?", 1)[0]).name or "image"
    return InputImage(uri, data, sha256_hex(data), filename, content_type_for(data, filename))


def _write(uri: str, data: bytes, options: StorageOptions) -> None:
    fs, path = url_to_fs(uri, **options)
    parent = posixpath.dirname(path)
    if fs.protocol in ("file", "local") or "file" in fs.protocol:
        fs.makedirs(parent, exist_ok=True)
        # Write then rename: a reader (or a rerun checking the checksum) never sees half a file.
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, data)  # an object PUT is atomic on S3 and its kin


async def write_bytes(data: bytes, uri: str, storage_options: StorageOptions | None = None) -> str:
    """Write `data` to `uri` (parents created for local paths); return `uri`."""
    await asyncio.to_thread(_write, uri, data, dict(storage_options or {}))
    return uri


def _checksum_matches(uri: str, sha256: str, options: StorageOptions) -> bool:
    fs, path = url_to_fs(uri, **options)
    if not fs.exists(path):
        return False
    return sha256_hex(fs.cat_file(path)) == sha256


async def exists_with_checksum(uri: str, sha256: str, storage_options: StorageOptions | None = None) -> bool:
    """True when `uri` exists and holds exactly the bytes whose sha256 is `sha256`."""
    return await asyncio.to_thread(_checksum_matches, uri, sha256, dict(storage_options or {}))


def _sign(uri: str, expires: int, options: StorageOptions) -> str | None:
    fs, path = url_to_fs(uri, **options)
    try:
        url: str = fs.sign(path, expiration=expires)
    except NotImplementedError:
        return None
    return url if url.startswith(("http://", "https://")) else None


async def presign(
    uri: str, storage_options: StorageOptions | None = None, *, expires: int = 604_800
) -> str | None:
    """A time-limited HTTPS URL for a private object (S3: at most 7 days); None where fsspec cannot sign."""
    if _is_local(uri):
        return None
    return await asyncio.to_thread(_sign, uri, min(expires, 604_800), dict(storage_options or {}))
