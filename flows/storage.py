"""Reading inputs and writing results through fsspec: local paths, s3:// (s3fs) or any other fsspec URL.

fsspec calls are blocking; they run in a worker thread so a flow's event loop keeps serving other edits. Local
files of up to `INLINE_BYTES` (256 KiB) are read and written in the event loop instead: with dozens of edits
at once, worker threads fighting for the GIL made a 5 kB read cost ~0.55 ms of CPU and a write ~0.27 ms,
against ~0.01 and ~0.05 ms inline (bench/).
`storage_options` go to fsspec unchanged, e.g. `{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}`
for MinIO, or `{"profile": "prod"}`.

Example:
    ```python
    from prefect_stablestudio.flows.storage import read_input, write_bytes

    source = await read_input("s3://photos/cat.png")     # size checked, hashed; held only up to 1 MiB
    uri = await write_bytes(await read_bytes(source.uri), "s3://edits/cat.png")
    ```

Reads survive s3fs's listings cache: a long-lived process (a worker, `serve`) that listed a prefix before an
object arrived would otherwise be told the object does not exist. A read that finds nothing drops the cached
listing of that path and looks once more.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from fsspec.core import url_to_fs

from prefect_stablestudio.client.errors import InvalidRequest
from prefect_stablestudio.client.media_types import content_type_for
from prefect_stablestudio.client.studio import DEFAULT_MAX_UPLOAD_BYTES

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
T = TypeVar("T")
_CHUNK = 1024 * 1024
INLINE_BYTES = 256 * 1024
"""Local files up to this size are read (and hashed) or written in the event loop, not in a worker thread."""
HELD_BYTES = _CHUNK
"""Inputs up to this size are held in memory after hashing (larger ones are streamed again to upload)."""



@dataclass(frozen=True)
class InputImage:
    """An input image: where it came from, its size and checksum, and its bytes when it was given as bytes.

    Files and URLs over `HELD_BYTES` (1 MiB) are not held in memory (an input may be up to 256 MiB): `source`
    is then the URI, which the upload streams from.
    """

    uri: str
    sha256: str
    filename: str
    content_type: str
    size: int
    data: bytes | None = None

    @property
    def source(self) -> str | bytes:
        """What to upload: the bytes when held, otherwise the URI."""
        return self.data if self.data is not None else self.uri


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data`, hex."""
    return hashlib.sha256(data).hexdigest()


def local_path(uri: str) -> str | None:
    """The filesystem path of a local path or file:// URL; None for other fsspec URLs.

    Example:
        >>> local_path("file:///data/cat.png"), local_path("s3://photos/cat.png")
        ('/data/cat.png', None)
    """
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return None if "://" in uri else os.path.expanduser(uri)


def _is_local(uri: str) -> bool:
    return local_path(uri) is not None


def join_uri(folder: str, name: str) -> str:
    """`folder` + `name` for local paths and URLs alike."""
    if _is_local(folder) and not folder.startswith("file://"):
        return str(Path(folder) / name)
    return folder.rstrip("/") + "/" + name


def _fresh(fs: Any, path: str, read: Callable[[], T]) -> T:
    """`read()`, once more after dropping the cached listing of `path` if it found nothing.

    s3fs answers "not found" from a listing it cached earlier in the process, without asking S3.
    """
    try:
        return read()
    except FileNotFoundError:
        fs.invalidate_cache(path)
        return read()


def _read(uri: str, options: StorageOptions) -> bytes:
    fs, path = url_to_fs(uri, **options)
    data: bytes = _fresh(fs, path, lambda: fs.cat_file(path))
    return data


async def read_bytes(uri: str, storage_options: StorageOptions | None = None) -> bytes:
    """All bytes at `uri` (a local path or any fsspec URL)."""
    return await asyncio.to_thread(_read, uri, dict(storage_options or {}))


def _hash_file(fs: Any, path: str) -> tuple[str, bytes]:
    """sha256 hex and first bytes of a file, read in chunks (never whole)."""
    digest = hashlib.sha256()
    head = b""
    with _fresh(fs, path, lambda: fs.open(path, "rb")) as handle:
        while chunk := handle.read(_CHUNK):
            if not head:
                head = chunk[:64]
            digest.update(chunk)
    return digest.hexdigest(), head


def _inspect(uri: str, options: StorageOptions, max_bytes: int) -> InputImage:
    fs, path = url_to_fs(uri, **options)
    size = int(_fresh(fs, path, lambda: fs.size(path)))
    if size > max_bytes:
        # Refused from its size alone: nothing read, nothing requested, nothing paid.
        raise InvalidRequest(
            f"input {uri[:200]} is {size} bytes, over the {max_bytes}-byte "
            f"({max_bytes / 2**20:g} MiB) upload limit; nothing was read or paid",
            field="source",
        )
    filename = PurePosixPath(uri.split("?", 1)[0]).name or "image"
    if size <= HELD_BYTES:
        # Read once and kept: the upload sends exactly the bytes that were hashed, without reading again.
        return _held(uri, filename, _fresh(fs, path, lambda: fs.cat_file(path)))
    digest, head = _hash_file(fs, path)
    return InputImage(uri, digest, filename, content_type_for(head, filename), size)


async def read_input(
    source: str | os.PathLike[str] | bytes,
    storage_options: StorageOptions | None = None,
    *,
    name: str = "",
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> InputImage:
    """Describe an input image from a path, an fsspec URL or raw bytes: size, sha256, name and type.

    The size is checked before a byte is read; a file up to 1 MiB is read once and held (the upload sends
    those very bytes), a larger one is hashed in chunks and not kept in memory.

    Args:
        source: a local path, an fsspec URL such as s3://bucket/key.png, or the image bytes.
        storage_options: fsspec options for URLs.
        name: a file name for raw bytes (its extension helps the content type); default `image`.
        max_bytes: the upload limit (the client's, 256 MiB, by default).

    Raises:
        InvalidRequest: the input is larger than `max_bytes`.
        FileNotFoundError: there is nothing at `source`.

    Example:
        ```python
        image = await read_input("s3://photos/cat.png", {"profile": "prod"})
        print(image.size, image.sha256, image.content_type)
        ```
    """
    if isinstance(source, bytes):
        if len(source) > max_bytes:
            raise InvalidRequest(
                f"input is {len(source)} bytes, over the {max_bytes}-byte upload limit", field="source"
            )
        digest = sha256_hex(source)
        filename = name or "image"
        return InputImage(
            f"bytes:{digest}", digest, filename, content_type_for(source, filename), len(source), source
        )
    uri = os.fspath(source)
    small = _inspect_small_local(uri, max_bytes)
    if small is not None:
        return small
    return await asyncio.to_thread(_inspect, uri, dict(storage_options or {}), max_bytes)


def _inspect_small_local(uri: str, max_bytes: int) -> InputImage | None:
    """A local file of up to `INLINE_BYTES`, read and hashed at once; None for anything else."""
    local = local_path(uri)
    if local is None or os.stat(local).st_size > min(INLINE_BYTES, max_bytes):
        return None
    with open(local, "rb") as handle:
        data = handle.read(INLINE_BYTES + 1)
    if len(data) > min(INLINE_BYTES, max_bytes):
        return None  # it grew since the stat: inspect it the long way
    return _held(uri, PurePosixPath(uri).name or "image", data)


def _held(uri: str, filename: str, data: bytes) -> InputImage:
    """An input read whole and kept: the upload sends exactly the bytes that were hashed."""
    return InputImage(uri, sha256_hex(data), filename, content_type_for(data, filename), len(data), data)


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
    local = local_path(uri)
    if local is not None and len(data) <= INLINE_BYTES:
        _write_local(local, data)
    else:
        await asyncio.to_thread(_write, uri, data, dict(storage_options or {}))
    return uri


def _write_local(path: str, data: bytes) -> None:
    # Write then rename: a reader (or a rerun checking the checksum) never sees half a file.
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        handle = open(tmp, "wb")  # the folder is made when missing, not checked before every write
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handle = open(tmp, "wb")
    with handle:
        handle.write(data)
    os.replace(tmp, path)


def _checksum_matches(uri: str, sha256: str, options: StorageOptions) -> bool:
    fs, path = url_to_fs(uri, **options)
    try:
        digest, _ = _hash_file(fs, path)
    except FileNotFoundError:
        return False
    return digest == sha256


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
