"""Small sample images drawn on the fly, so the demo needs no bundled binaries.

Example:
    >>> import tempfile
    >>> from prefect_stablestudio.samples import write_sample_images
    >>> paths = write_sample_images(tempfile.mkdtemp())
    >>> [p.suffix for p in paths]
    ['.png', '.jpg', '.webp']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

_SIZE = (512, 384)


def _landscape() -> Image.Image:
    image = Image.new("RGB", _SIZE)
    draw = ImageDraw.Draw(image)
    width, height = _SIZE
    for y in range(height):  # a sky that darkens towards the top
        shade = int(120 + 120 * y / height)
        draw.line([(0, y), (width, y)], fill=(70, shade // 2 + 60, shade))
    draw.ellipse([360, 50, 430, 120], fill=(255, 226, 120))
    draw.polygon(
        [(0, 300), (140, 190), (260, 280), (380, 170), (512, 290), (512, 384), (0, 384)], fill=(46, 110, 60)
    )
    return image


def _product() -> Image.Image:
    image = Image.new("RGB", _SIZE, (236, 236, 232))
    draw = ImageDraw.Draw(image)
    draw.rectangle([196, 120, 316, 300], fill=(190, 60, 50))  # a mug
    draw.ellipse([196, 105, 316, 135], fill=(210, 80, 70))
    draw.arc([290, 160, 360, 250], start=270, end=90, fill=(190, 60, 50), width=14)
    draw.ellipse([150, 290, 362, 320], fill=(205, 205, 200))
    return image


def _pattern() -> Image.Image:
    image = Image.new("RGB", _SIZE, (250, 248, 240))
    draw = ImageDraw.Draw(image)
    for index, x in enumerate(range(0, _SIZE[0], 64)):
        for row, y in enumerate(range(0, _SIZE[1], 64)):
            colour = (40 + 25 * index % 200, 90 + 30 * row % 150, 160)
            draw.ellipse([x + 8, y + 8, x + 56, y + 56], fill=colour)
    return image


_SAMPLES: list[tuple[str, Callable[[], Image.Image]]] = [
    ("landscape.png", _landscape),
    ("product.jpg", _product),
    ("pattern.webp", _pattern),
]


def write_sample_images(directory: str | Path) -> list[Path]:
    """Draw the demo's sample images into `directory` (created if needed) and return their paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in _SAMPLES:
        path = target / name
        draw().save(path, quality=88)
        paths.append(path)
    return paths
