"""Upload sources: small files read at once and sent as bytes, larger ones streamed; the same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefect_stablestudio.client import sources
from prefect_stablestudio.client.sources import CHUNK_SIZE, SMALL_FILE_BYTES, OpenedSource, open_source
from tests.client.helpers import simulator_client as client

PNG_HEAD = bytes.fromhex("89504e470d0a1a0a0000000d49484452")


def png_of(size: int) -> bytes:
    """`size` bytes that sniff as PNG (the head of one, then a pattern that shows misplaced chunks)."""
    filler = bytes(range(256)) * (size // 256 + 1)
    return (PNG_HEAD + filler)[:size]


async def streamed(opened: OpenedSource) -> bytes:
    return b"".join([chunk async for chunk in opened.chunks()])


async def test_a_small_file_is_read_at_once_and_kept_as_bytes(tmp_path: Path) -> None:
    content = png_of(SMALL_FILE_BYTES)
    path = tmp_path / "small.png"
    path.write_bytes(content)
    opened = await open_source(path, max_bytes=10 * SMALL_FILE_BYTES)
    assert (opened.size, opened.content_type, opened.filename) == (len(content), "image/png", "small.png")
    assert opened.data == content
    assert await streamed(opened) == content
    path.write_bytes(b"changed")  # what was inspected is what is sent
    assert await streamed(opened) == content


async def test_a_larger_file_is_streamed_from_disk(tmp_path: Path) -> None:
    content = png_of(CHUNK_SIZE + SMALL_FILE_BYTES)
    path = tmp_path / "large.png"
    path.write_bytes(content)
    opened = await open_source(path, max_bytes=4 * CHUNK_SIZE)
    assert opened.data is None and opened.size == len(content)
    chunks = [chunk async for chunk in opened.chunks()]
    assert [len(c) for c in chunks] == [CHUNK_SIZE, SMALL_FILE_BYTES]
    assert b"".join(chunks) == content
    assert await streamed(opened) == content  # a retried PUT streams it again


async def test_bytes_are_sent_as_is_up_to_one_chunk_and_streamed_beyond(tmp_path: Path) -> None:
    one_chunk = png_of(CHUNK_SIZE)
    assert (await open_source(one_chunk, max_bytes=4 * CHUNK_SIZE)).data == one_chunk
    larger = png_of(CHUNK_SIZE + 1)
    opened = await open_source(larger, max_bytes=4 * CHUNK_SIZE)
    assert opened.data is None and await streamed(opened) == larger


async def test_a_file_that_changed_since_it_was_measured_is_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.png"
    path.write_bytes(png_of(1000))
    describe = sources._describe

    def stale(source: Any, storage_options: dict[str, Any]) -> Any:
        opener, _, name = describe(source, storage_options)
        return opener, 500, name  # the size seen before the file grew

    monkeypatch.setattr(sources, "_describe", stale)
    opened = await open_source(path, max_bytes=SMALL_FILE_BYTES)
    assert opened.data is None and opened.size == 500
    assert await streamed(opened) == png_of(1000)  # as before: the stream sends what the file holds


async def test_small_and_streamed_files_upload_the_same_bytes(sim: Any, key: str, tmp_path: Path) -> None:
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    small.write_bytes(png_of(5000))
    large.write_bytes(png_of(SMALL_FILE_BYTES + 4321))
    async with client(sim, key) as c:
        for path in (small, large):
            result = await c.upload_detailed(path)
            assert result.size == path.stat().st_size
            assert await c.download(result.blob_url) == path.read_bytes()
