"""Result URLs that misbehave: endless or oversized bodies, a lying Content-Length, the wrong media type.

Each is a purpose-built server on 127.0.0.1. The download stops at the limit (at most one chunk past it),
memory stays bounded far below the limit, and nothing is left at the destination, local or S3 (moto).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from prefect_stablestudio.client import (
    ResultTooLarge,
    StableStudioClient,
    UnexpectedMediaType,
    UntrustedServerValue,
)
from prefect_stablestudio.client.downloads import DOWNLOAD_CHUNK_BYTES
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.result_files import write_chunks

PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4
BLOCK = 64 * 1024
MIB = 2**20


class Sent:
    """What the hostile server sent, counted on its side."""

    def __init__(self) -> None:
        self.bytes = 0


def hostile_app(sent: Sent) -> Starlette:
    async def endless(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield PNG_HEAD
            block = b"\x00" * BLOCK
            while True:  # a broken CDN: it never stops (until the client hangs up)
                sent.bytes += len(block)
                yield block
                if sent.bytes % (16 * BLOCK) == 0 and await request.is_disconnected():
                    return

        return StreamingResponse(body(), media_type="image/png")

    async def sized(request: Request) -> Response:
        size = int(request.path_params["size"])
        return Response(PNG_HEAD + b"\x00" * (size - len(PNG_HEAD)), media_type="image/png")

    async def video(request: Request) -> Response:
        return Response(MP4_HEAD + b"\x01" * 1000, media_type="video/mp4")

    async def html(request: Request) -> Response:
        return Response(b"<html><body>Access denied</body></html>", media_type="image/png")

    async def redirect(request: Request) -> Response:
        return Response(status_code=302, headers={"location": "/sized/100"})

    async def to_file_scheme(request: Request) -> Response:
        return Response(status_code=302, headers={"location": "ftp://127.0.0.1/x.png"})

    return Starlette(
        routes=[
            Route("/endless.png", endless),
            Route("/sized/{size}", sized),
            Route("/clip.mp4", video),
            Route("/page.png", html),
            Route("/moved.png", redirect),
            Route("/sneaky.png", to_file_scheme),
        ]
    )


async def lying_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Announces 10 GiB, then sends a few bytes: the announcement alone must stop the download."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"image/png"), (b"content-length", str(10 * 2**30).encode())]})
    await send({"type": "http.response.body", "body": PNG_HEAD, "more_body": False})


@pytest.fixture
def hostile(serve_app: Any) -> tuple[str, Sent]:
    sent = Sent()
    return serve_app(hostile_app(sent)), sent


async def test_an_endless_body_stops_within_a_chunk_of_the_limit_in_bounded_memory(
    hostile: tuple[str, Sent], key: str
) -> None:
    base, sent = hostile
    limit = 24 * MIB
    tracemalloc.start()
    try:
        async with StableStudioClient(key, base_url=base, max_image_result_bytes=limit) as client:
            with pytest.raises(ResultTooLarge) as caught:
                async with client.stream_download(f"{base}/endless.png") as result:
                    async for _ in result.chunks():
                        pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = caught.value
    assert not error.announced and error.limit == limit
    assert limit < error.seen <= limit + DOWNLOAD_CHUNK_BYTES
    assert "24 MiB" in str(error) and "download stopped" in str(error)
    assert sent.bytes >= limit - BLOCK  # the server did send that much: the limit stopped it
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB while streaming a {limit // MIB} MiB limit"


async def test_the_bytes_form_has_the_same_limit(hostile: tuple[str, Sent], key: str) -> None:
    base, _ = hostile
    async with StableStudioClient(key, base_url=base) as client:
        assert (await client.download(f"{base}/sized/5000"))[:8] == PNG_HEAD[:8]
        with pytest.raises(ResultTooLarge) as caught:
            await client.download(f"{base}/sized/{3 * MIB}", max_bytes=2 * MIB)
        assert caught.value.announced  # the Content-Length said so: no body read
        # Redirects are followed (each hop checked) ...
        assert len(await client.download(f"{base}/moved.png")) == 100
        # ... but never to a scheme this client does not fetch.
        with pytest.raises(UntrustedServerValue, match="result URL") as refused:
            await client.download(f"{base}/sneaky.png")
        assert refused.value.field == "result URL"


async def test_a_content_length_over_the_limit_is_refused_before_the_body(
    serve_app: Any, key: str
) -> None:
    base = serve_app(lying_length)
    async with StableStudioClient(key, base_url=base) as client:
        with pytest.raises(ResultTooLarge) as caught:
            async with client.stream_download(f"{base}/huge.png"):
                pass
    assert caught.value.announced and caught.value.seen == 10 * 2**30
    assert "nothing was downloaded" in str(caught.value)


async def test_the_first_bytes_must_be_the_expected_media(hostile: tuple[str, Sent], key: str) -> None:
    base, _ = hostile
    async with StableStudioClient(key, base_url=base) as client:
        with pytest.raises(UnexpectedMediaType) as caught:
            await client.download(f"{base}/page.png")
        assert caught.value.expected == "image" and caught.value.head.startswith(b"<html>")
        with pytest.raises(UnexpectedMediaType):
            await client.download(f"{base}/clip.mp4")  # a video where an image was expected
        async with client.stream_download(f"{base}/clip.mp4", media="video") as result:
            assert result.content_type == "video/mp4"
            assert sum([len(c) async for c in result.chunks()]) == len(MP4_HEAD) + 1000


async def test_nothing_is_left_in_a_local_folder_after_an_oversized_result(
    hostile: tuple[str, Sent], tmp_path: Path
) -> None:
    base, _ = hostile
    target = tmp_path / "out" / "edit.png"
    tracemalloc.start()
    try:
        with pytest.raises(ResultTooLarge):
            await steps.save(f"{base}/endless.png", str(target), max_bytes=24 * MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * MIB  # streamed to the file: never held
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary file either
    with pytest.raises(UnexpectedMediaType):
        await steps.save(f"{base}/page.png", str(target))
    assert list((tmp_path / "out").iterdir()) == []


async def test_nothing_is_left_in_s3_after_an_oversized_result(
    hostile: tuple[str, Sent], s3_bucket: str, s3_storage_options: dict[str, Any], s3fs_filesystem: Any
) -> None:
    base, _ = hostile
    uri = f"s3://{s3_bucket}/renders/edit.png"
    # 20 MiB: parts of a multipart upload (5 MiB each) are sent before the limit is passed.
    with pytest.raises(ResultTooLarge):
        await steps.save(f"{base}/endless.png", uri, storage_options=s3_storage_options, max_bytes=20 * MIB)
    s3fs_filesystem.invalidate_cache()
    assert s3fs_filesystem.ls(s3_bucket) == []
    uploads = s3fs_filesystem.call_s3("list_multipart_uploads", Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []  # the multipart upload was aborted, its parts dropped


async def test_a_streamed_write_commits_whole_to_s3_and_local(
    s3_bucket: str, s3_storage_options: dict[str, Any], s3fs_filesystem: Any, tmp_path: Path
) -> None:
    import hashlib

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(20):
            yield bytes([i]) * MIB

    expected = hashlib.sha256(b"".join(bytes([i]) * MIB for i in range(20))).hexdigest()
    uri = f"s3://{s3_bucket}/big.bin"
    written = await write_chunks(chunks(), uri, s3_storage_options)
    assert (written.size, written.sha256) == (20 * MIB, expected)
    s3fs_filesystem.invalidate_cache()
    assert s3fs_filesystem.size(uri) == 20 * MIB
    local = await write_chunks(chunks(), str(tmp_path / "big.bin"))
    assert local.sha256 == expected and [p.name for p in tmp_path.iterdir()] == ["big.bin"]
    memory = await write_chunks(chunks(), "memory://results/big.bin")
    assert memory.sha256 == expected
