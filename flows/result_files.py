"""Writing a streamed result to its destination: in chunks, hashed on the way, committed whole or not at all.

A result may be a 2 GiB video: it is never held in memory. Each destination commits in one step, and an
error (a body over its limit, a dropped connection, a cancelled run) leaves nothing at the destination:

- a local path: written to `<name>.<random>.tmp` in the same folder, then `os.replace` (atomic on one
  filesystem); the temporary file is deleted on error.
- S3 (s3fs, `s3://` / `s3a://`): one multipart upload straight to the key, in parts of `S3_PART_BYTES`; S3
  creates the object only when the upload is completed, so completing it is the commit, and an error aborts
  it. This avoids both a visible temporary key and a server-side copy of a large object (which `fs.mv` is
  on S3: a copy of every byte, then a delete).
- any other fsspec URL: written under a temporary key, then `fs.mv` to the name; the temporary key is
  removed on error.

Example:
    ```python
    written = await write_chunks(result.chunks(), "s3://renders/waves.mp4", {"profile": "prod"})
    print(written.size, written.sha256)
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs
from fsspec.spec import AbstractBufferedFile

from prefect_stablestudio.flows.storage import StorageOptions, local_path

__all__ = ["S3_PART_BYTES", "WrittenFile", "write_chunks"]

S3_PART_BYTES = 5 * 2**20
"""Part size of a streamed S3 upload: S3's least, since s3fs holds a part (and copies of it) while sending it
(256 MiB to moto: +33 MB of peak RSS with 5 MiB parts, +53 MB with 8 MiB; 1 GiB: +39 MB; bench/). With S3's
10 000 parts, this bounds a result at ~48 GiB, far above the 2 GiB default video limit."""


@dataclass(frozen=True)
class WrittenFile:
    """A result written whole: where, how many bytes, their sha256 (hex)."""

    uri: str
    size: int
    sha256: str


async def write_chunks(
    chunks: AsyncIterator[bytes], uri: str, storage_options: StorageOptions | None = None
) -> WrittenFile:
    """Write `chunks` to `uri` (local path or fsspec URL), hashing them on the way; commit only at the end.

    Raises:
        whatever the chunks raise (e.g. `ResultTooLarge`), or the storage's own errors; nothing is left at
        `uri` then (and no temporary file or unfinished upload either).
    """
    local = local_path(uri)
    sink: _Sink
    if local is not None:
        sink = _LocalSink(local)
    else:
        fs, path = url_to_fs(uri, **dict(storage_options or {}))
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        sink = _S3Sink(fs, path) if {"s3", "s3a"} & set(protocols) else _TempKeySink(fs, path)
    digest = hashlib.sha256()
    size = 0
    await asyncio.to_thread(sink.open)
    try:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(sink.write, chunk)
        await asyncio.to_thread(sink.commit)
    except BaseException:
        # Shielded: a cancelled run must still not leave half a file behind.
        await asyncio.shield(asyncio.to_thread(sink.discard))
        raise
    return WrittenFile(uri=uri, size=size, sha256=digest.hexdigest())


class _Sink:
    """One destination: open, write chunks, then commit or discard (blocking calls, run in a thread)."""

    def open(self) -> None:
        raise NotImplementedError

    def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError


class _LocalSink(_Sink):
    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        self.handle: Any = None

    def open(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.handle = open(self.tmp, "wb")

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self) -> None:
        self.handle.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.handle is not None:
            self.handle.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class _S3Sink(_Sink):
    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path
        self.handle: Any = None

    def open(self) -> None:
        self.handle = self.fs.open(self.path, "wb", block_size=S3_PART_BYTES)

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self) -> None:
        self.handle.close()  # completes the multipart upload (or PUTs a small object): the object appears
        self.fs.invalidate_cache(self.path)

    def discard(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.discard()  # aborts the multipart upload: S3 keeps none of its parts
            self.handle.closed = True  # never closed (which would complete the upload), not even on __del__


class _TempKeySink(_Sink):
    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path
        parent, name = posixpath.split(path)
        self.tmp = posixpath.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
        self.handle: Any = None

    def open(self) -> None:
        self.handle = self.fs.open(self.tmp, "wb")

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self) -> None:
        self.handle.close()
        self.fs.mv(self.tmp, self.path)

    def discard(self) -> None:
        if isinstance(self.handle, AbstractBufferedFile) and not self.handle.closed:
            self.handle.discard()
            self.handle.closed = True  # never closed, which would write the temporary key
        # Other file kinds (e.g. memory://) write on close: left unclosed, they write nothing.
        if self.fs.exists(self.tmp):
            self.fs.rm(self.tmp)
