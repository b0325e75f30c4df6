"""Results streamed from their URL in chunks, with a size limit per media kind and a check of the first bytes.

A result URL is whatever the server's job record says: a broken CDN or a hostile server can send a body that
never ends, or an HTML page instead of an image. `open_result` reads the body in chunks, refuses a body whose
Content-Length is over the limit before reading it, stops at most one chunk past the limit of one that does
not say, and checks the first bytes against the media kind before a caller writes anything.

Every URL fetched here (the result URL and each redirect hop) goes through `check_result_location` first.

Example:
    ```python
    async with httpx.AsyncClient() as http:
        async with open_result(http, url, media="image", max_bytes=64 * 2**20) as result:
            async for chunk in result.chunks():
                sink.write(chunk)
    ```
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin

import httpx

from prefect_stablestudio.client._http import raise_for_status
from prefect_stablestudio.client.errors import ProtocolError, ResultTooLarge, UnexpectedMediaType
from prefect_stablestudio.client.media_types import sniff_media_type
from prefect_stablestudio.client.server_values import check_result_url

__all__ = [
    "DEFAULT_RESULT_LIMITS",
    "DOWNLOAD_CHUNK_BYTES",
    "MAX_IMAGE_RESULT_BYTES",
    "MAX_VIDEO_RESULT_BYTES",
    "ResultStream",
    "check_result_location",
    "open_result",
]

ResultMedia = Literal["image", "video"]
MAX_IMAGE_RESULT_BYTES = 64 * 2**20
"""Default limit of an image result: 64 MiB (a Flux 2 Pro 4 MP PNG is ~10 MiB)."""
MAX_VIDEO_RESULT_BYTES = 2 * 2**30
"""Default limit of a video result: 2 GiB (a minute of 1080p is a few hundred MiB)."""
DEFAULT_RESULT_LIMITS: dict[ResultMedia, int] = {
    "image": MAX_IMAGE_RESULT_BYTES,
    "video": MAX_VIDEO_RESULT_BYTES,
}
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
"""Bytes per chunk handed to a sink: the most a download reads past its limit."""
_MAX_REDIRECTS = 5
_ERROR_BODY_BYTES = 4096
_HEAD_BYTES = 16


def check_result_location(url: str) -> str:
    """The one gate every result or media URL passes before it is fetched (and each redirect hop): the
    server-values rule `check_result_url` (https, or http on loopback; no userinfo; no other scheme).

    Raises:
        UntrustedServerValue: the URL is not one this client fetches.
    """
    return check_result_url(url, "result URL")


@dataclass
class ResultStream:
    """An open result: its sniffed type, its announced size, and its body as bounded chunks.

    Attributes:
        url: the URL the body came from (after redirects).
        media: "image" or "video": what the result had to be.
        content_type: the type sniffed from the first bytes (e.g. "image/png").
        header_type: the Content-Type header without parameters ("" if none).
        announced_size: the Content-Length, when the server sent one.
        max_bytes: the limit the body is held to.
        received: bytes handed out so far.
    """

    url: str
    media: ResultMedia
    content_type: str
    header_type: str
    announced_size: int | None
    max_bytes: int
    _head: bytes
    _rest: AsyncIterator[bytes]
    received: int = field(default=0)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, first bytes included, in chunks of at most `DOWNLOAD_CHUNK_BYTES` (once).

        Raises:
            ResultTooLarge: the body passed `max_bytes` (it stops there, at most one chunk past it).
        """
        if self._head:
            head, self._head = self._head, b""
            self._count(head)
            yield head
        async for chunk in self._rest:
            self._count(chunk)
            yield chunk

    def _count(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise ResultTooLarge(
                f"{self.media} result at {self.url[:200]} passed the {_mib(self.max_bytes)} limit after "
                f"{self.received} bytes; download stopped",
                limit=self.max_bytes,
                seen=self.received,
                announced=False,
            )


@asynccontextmanager
async def open_result(
    http: httpx.AsyncClient,
    url: str,
    *,
    media: ResultMedia,
    max_bytes: int | None = None,
) -> AsyncIterator[ResultStream]:
    """GET a result URL as a bounded stream whose first bytes were checked. No credentials are sent.

    Redirects are followed (at most 5), each hop checked by `check_result_location`.

    Args:
        http: the HTTP client to use (its pool; its redirect setting is ignored).
        url: the result URL.
        media: "image" or "video": what the first bytes must be (a video may also be an animated GIF).
        max_bytes: the size limit; default `DEFAULT_RESULT_LIMITS[media]`.

    Raises:
        ResultTooLarge: Content-Length over the limit (no body read), or the body passed it while reading.
        UnexpectedMediaType: the first bytes are not an image (or a video).
        UpstreamError, RateLimited: a non-2xx reply (e.g. 410 when the URL expired).
        ProtocolError: too many redirects.
    """
    limit = DEFAULT_RESULT_LIMITS[media] if max_bytes is None else max_bytes
    if limit <= 0:
        raise ValueError(f"max_bytes must be positive, not {limit}")
    location = check_result_location(url)
    for _ in range(_MAX_REDIRECTS + 1):
        # Media is compressed already; asking for it as is also keeps a gzip bomb from inflating one read.
        request = http.build_request("GET", location, headers={"accept-encoding": "identity"})
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect:
                target = response.headers.get("location", "")
                location = check_result_location(urljoin(location, target))
                continue
            if not response.is_success:
                await _raise_for_error(response, f"GET {url[:200]}")
            announced = _content_length(response)
            if announced is not None and announced > limit:
                raise ResultTooLarge(
                    f"{media} result at {url[:200]} announces {announced} bytes, over the {_mib(limit)} "
                    "limit; nothing was downloaded",
                    limit=limit,
                    seen=announced,
                    announced=True,
                )
            rest = response.aiter_bytes(DOWNLOAD_CHUNK_BYTES)
            head = await _first_bytes(rest, limit)
            sniffed = _expect(media, head, url)
            yield ResultStream(
                url=location,
                media=media,
                content_type=sniffed,
                header_type=response.headers.get("content-type", "").split(";", 1)[0].strip(),
                announced_size=announced,
                max_bytes=limit,
                _head=head,
                _rest=rest,
            )
            return
        finally:
            await response.aclose()
    raise ProtocolError(f"GET {url[:200]}: more than {_MAX_REDIRECTS} redirects")


async def _first_bytes(body: AsyncIterator[bytes], limit: int) -> bytes:
    """At least `_HEAD_BYTES` of the body (fewer only if it ends sooner): one chunk, or a few tiny ones."""
    head = b""
    async for chunk in body:
        head += chunk
        if len(head) >= _HEAD_BYTES or len(head) > limit:
            break
    return head


def _expect(media: ResultMedia, head: bytes, url: str) -> str:
    sniffed = sniff_media_type(head[:_HEAD_BYTES])
    # A video route may return an animated GIF (the simulator does), so images pass for videos.
    if sniffed is None or (media == "image" and not sniffed.startswith("image/")):
        what = f"{sniffed} bytes" if sniffed else f"bytes starting {head[:_HEAD_BYTES]!r}"
        raise UnexpectedMediaType(
            f"{media} result at {url[:200]} is not an {media}: got {what}",
            expected=media,
            head=head[:_HEAD_BYTES],
        )
    return sniffed


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _raise_for_error(response: httpx.Response, what: str) -> None:
    """Raise the error for a non-2xx reply, reading no more than a few kB of its body."""
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= _ERROR_BODY_BYTES:
            break
    # Raw (undecoded) bytes: only the headers that describe them as text go along.
    kept = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "retry-after")}
    read = httpx.Response(
        response.status_code, headers=kept, content=body[:_ERROR_BODY_BYTES], request=response.request
    )
    raise_for_status(read, what)


def _mib(size: int) -> str:
    return f"{size}-byte ({size / 2**20:g} MiB)"
