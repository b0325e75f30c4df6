"""Media types, the one place the project tells them from bytes and names files after them.

Inputs and results are typed by their first bytes, never by what a server or a file name claims: an upload
is refused before paying when its bytes are no image, and a result is refused when they are not what was
asked for (downloads.py).

Example:
    >>> sniff_media_type(bytes.fromhex("89504e470d0a1a0a")), extension_for("video/mp4")
    ('image/png', 'mp4')
"""

from __future__ import annotations

import mimetypes

__all__ = [
    "ALLOWED_IMAGE_TYPES",
    "SNIFF_BYTES",
    "content_type_for",
    "extension_for",
    "normalise_type",
    "sniff_image_type",
    "sniff_media_type",
]

ALLOWED_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The image types StableStudio's upload accepts."""

SNIFF_BYTES = 16
"""How many first bytes `sniff_media_type` needs."""

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
}


def sniff_image_type(head: bytes) -> str | None:
    """The MIME type of a JPEG, PNG, GIF or WebP from its first 12 bytes; None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff_media_type(head: bytes) -> str | None:
    """The MIME type of an image (as `sniff_image_type`) or a video (MP4, QuickTime, WebM) from its first
    16 bytes; None for anything else.

    Example:
        >>> sniff_media_type(b"\\x00\\x00\\x00\\x18ftypmp42"), sniff_media_type(b"<html>")
        ('video/mp4', None)
    """
    image = sniff_image_type(head)
    if image is not None:
        return image
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def normalise_type(content_type: str) -> str:
    """A declared type without parameters, lower case, `image/jpg` read as `image/jpeg`."""
    value = content_type.split(";", 1)[0].strip().lower()
    return "image/jpeg" if value == "image/jpg" else value


def content_type_for(data: bytes, name: str = "") -> str:
    """The media type of `data`: from its first bytes, else from the name's extension.

    Example:
        >>> content_type_for(b"", "clip.webm"), content_type_for(b"", "notes")
        ('video/webm', 'application/octet-stream')
    """
    sniffed = sniff_media_type(data[:SNIFF_BYTES])
    if sniffed is not None:
        return sniffed
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def extension_for(content_type: str) -> str:
    """The file extension a file of `content_type` is saved under (without the dot; "bin" when unknown).

    Example:
        >>> extension_for("image/jpeg"), extension_for("image/gif; charset=binary"), extension_for("")
        ('jpg', 'gif', 'bin')
    """
    base = normalise_type(content_type)
    if base in _EXTENSIONS:
        return _EXTENSIONS[base]
    guessed = mimetypes.guess_extension(base) if base else None
    return guessed.lstrip(".") if guessed else "bin"
