"""Result images: the first reference image fitted to the requested shape, tinted, the prompt drawn on."""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont, ImageOps

MEGAPIXELS = {"0.5 MP": 0.5, "1 MP": 1.0, "2 MP": 2.0}
PIL_FORMATS = {"webp": ("WEBP", "image/webp"), "jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


def output_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height for an aspect ratio like ``16:9`` at a resolution like ``1 MP`` (multiples of 16).

    Example:
        >>> output_size("1:1", "1 MP")
        (1008, 1008)
    """
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    pixels = MEGAPIXELS[resolution] * 1_000_000
    height = math.sqrt(pixels * h_ratio / w_ratio)
    width = height * w_ratio / h_ratio
    return max(16, int(width) // 16 * 16), max(16, int(height) // 16 * 16)


def render_result(
    reference: bytes,
    *,
    prompt: str,
    aspect_ratio: str,
    resolution: str,
    output_format: str,
    output_quality: int,
) -> tuple[bytes, str]:
    """Render a result image and return its bytes and content type (CPU-bound: call it in a worker thread).

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (8, 8), "red").save(buf, "PNG")
        >>> data, ctype = render_result(buf.getvalue(), prompt="hi", aspect_ratio="1:1", resolution="0.5 MP",
        ...                             output_format="png", output_quality=80)
        >>> ctype, Image.open(io.BytesIO(data)).size
        ('image/png', (704, 704))
    """
    size = output_size(aspect_ratio, resolution)
    with Image.open(io.BytesIO(reference)) as source:
        fitted = ImageOps.fit(source.convert("RGB"), size, method=Image.Resampling.BILINEAR)
    digest = hashlib.sha256(prompt.encode()).digest()
    tint = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    image = Image.blend(fitted, tint, 0.3)
    draw = ImageDraw.Draw(image)
    font_size = max(12, size[1] // 24)
    font = ImageFont.load_default(size=font_size)
    text = "\n".join(textwrap.wrap(prompt, width=max(10, size[0] // (font_size // 2 + 1)))[:6])
    draw.multiline_text(
        (font_size, font_size), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
    )
    pil_format, content_type = PIL_FORMATS[output_format]
    out = io.BytesIO()
    if pil_format == "PNG":
        image.save(out, pil_format, compress_level=1)
    else:
        image.save(out, pil_format, quality=max(1, output_quality))
    return out.getvalue(), content_type


class RenderCache:
    """Rendered results by a key of their inputs, bounded in bytes, least recently used evicted (thread-safe).

    Rendering is deterministic, so an evicted result is simply rendered again on the next read.

    Example:
        >>> cache = RenderCache(max_bytes=10)
        >>> cache.get_or_render("k", lambda: (b"abc", "image/png"))
        (b'abc', 'image/png')
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._size = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._rendering: dict[str, threading.Lock] = {}

    def get_or_render(self, key: str, render: Callable[[], tuple[bytes, str]]) -> tuple[bytes, str]:
        """The cached result for ``key``, rendering it once even when many threads ask at the same time."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._rendering.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            result = render()
            with self._lock:
                self._items[key] = result
                self._size += len(result[0])
                while self._size > self._max and len(self._items) > 1:
                    _, (data, _) = self._items.popitem(last=False)
                    self._size -= len(data)
                self._rendering.pop(key, None)
        return result

    def clear(self) -> None:
        """Forget every rendered result."""
        with self._lock:
            self._items.clear()
            self._size = 0
