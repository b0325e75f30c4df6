"""Results of the generate routes: images drawn from the prompt (or a reference), videos as animated GIFs.

A real MP4 needs an encoder Pillow lacks; an animated GIF is a small, real, multi-frame file any client can
download, store and open, which is all the simulator has to prove. Its thumbnail is the first frame as PNG.

Example:
    >>> data, ctype = render_video(None, prompt="waves", size=(64, 36), frames=3)
    >>> ctype, Image.open(io.BytesIO(data)).n_frames
    ('image/gif', 3)
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw, ImageFont, ImageOps

from prefect_stablestudio.simulator.render import PIL_FORMATS

__all__ = ["render_image", "render_thumbnail", "render_video", "size_for"]


def size_for(aspect_ratio: str | None, pixels: int = 256 * 256) -> tuple[int, int]:
    """A small frame of about ``pixels`` pixels for a ratio like ``16:9``, ``19.5:9`` (else square).

    Example:
        >>> size_for("16:9")
        (336, 192)
    """
    try:
        w, h = (float(x) for x in str(aspect_ratio).replace("*", ":").replace("x", ":").split(":"))
    except ValueError:
        w, h = 1.0, 1.0
    if w <= 0 or h <= 0:
        w, h = 1.0, 1.0
    height = (pixels * h / w) ** 0.5
    width = height * w / h
    return max(16, int(width) // 16 * 16), max(16, int(height) // 16 * 16)


def _base(reference: bytes | None, prompt: str, size: tuple[int, int], shift: int = 0) -> Image.Image:
    digest = hashlib.sha256(prompt.encode()).digest()
    color = ((digest[0] + shift) % 256, (digest[1] + 2 * shift) % 256, digest[2])
    tint = Image.new("RGB", size, color)
    if reference is None:
        return tint
    with Image.open(io.BytesIO(reference)) as source:
        fitted = ImageOps.fit(source.convert("RGB"), size, method=Image.Resampling.BILINEAR)
    return Image.blend(fitted, tint, 0.3)


def _caption(image: Image.Image, text: str) -> None:
    font_size = max(10, image.size[1] // 12)
    ImageDraw.Draw(image).text(
        (4, 4), text[:40], fill=(255, 255, 255), font=ImageFont.load_default(size=font_size),
        stroke_width=1, stroke_fill=(0, 0, 0),
    )


def render_image(
    reference: bytes | None, *, prompt: str, size: tuple[int, int], output_format: str, quality: int = 80
) -> tuple[bytes, str]:
    """A result image (``output_format`` webp, jpg or png) and its content type."""
    image = _base(reference, prompt, size)
    _caption(image, prompt)
    pil_format, content_type = PIL_FORMATS[output_format]
    out = io.BytesIO()
    if pil_format == "PNG":
        image.save(out, pil_format, compress_level=1)
    else:
        image.save(out, pil_format, quality=max(1, quality))
    return out.getvalue(), content_type


def render_video(
    reference: bytes | None, *, prompt: str, size: tuple[int, int], frames: int = 8
) -> tuple[bytes, str]:
    """A short looping animated GIF (the simulator's stand-in for a video) and its content type."""
    images = []
    for i in range(frames):
        frame = _base(reference, prompt, size, shift=i * 24)
        _caption(frame, f"{prompt} [{i + 1}/{frames}]")
        images.append(frame)
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=125, loop=0)
    return out.getvalue(), "image/gif"


def render_thumbnail(reference: bytes | None, *, prompt: str, size: tuple[int, int]) -> tuple[bytes, str]:
    """A video's thumbnail: its first frame as PNG."""
    frame = _base(reference, prompt, size)
    _caption(frame, f"{prompt} [1/8]")
    out = io.BytesIO()
    frame.save(out, "PNG", compress_level=1)
    return out.getvalue(), "image/png"
