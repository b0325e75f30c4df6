"""Prices of the generate routes other than the Flux 2 Pro edit: mid-range figures of the model table.

The table, with its sources, is in docs/decisions.md ("What is known of each model").

Real prices drift and clients must read them from the 402 quote; these only make the simulator's quotes
differ per model and per tier the way StableStudio's do. Each route prices by one body field (its tier); a
body without that field, or with a value the table lacks, pays the route's ``default``.

Example:
    >>> generate_prices()["seedance/t2v"]["480p"]
    330000
    >>> TIER_FIELDS["veo-3.1/generate"]
    'durationSeconds'
"""

from __future__ import annotations

from typing import Any

__all__ = ["TIER_FIELDS", "generate_prices", "tier_of"]

# The body field each route's price depends on (None: one price).
TIER_FIELDS: dict[str, str | None] = {
    "flux-2-pro/generate": "resolution",
    "flux-2-max/generate": "resolution",
    "flux-2-max/edit": "resolution",
    "nano-banana-pro/generate": "imageSize",
    "nano-banana-pro/edit": "imageSize",
    "nano-banana/generate": "imageSize",
    "nano-banana/edit": "imageSize",
    "gpt-image-2/generate": "quality",
    "gpt-image-2/edit": "quality",
    "gpt-image-1.5/generate": "quality",
    "gpt-image-1.5/edit": "quality",
    "grok/generate": None,
    "grok/edit": None,
    "veo-3.1/generate": "durationSeconds",
    "seedance/t2v": "outputResolution",
    "seedance/i2v": "outputResolution",
    "wan-2.6/t2v": "duration",
    "wan-2.6/i2v": "duration",
    "sora-2/generate": "seconds",
}


def generate_prices() -> dict[str, dict[str, int]]:
    """Atomic USDC per generate route and tier (every route has a ``default``)."""
    flux_pro = {"0.5 MP": 20_000, "1 MP": 30_000, "2 MP": 40_000}
    flux_max = {"0.5 MP": 40_000, "1 MP": 70_000, "2 MP": 110_000, "4 MP": 170_000}
    nano_pro = {"1K": 130_000, "2K": 180_000, "4K": 240_000}
    nano = {"512": 45_000, "1K": 67_000, "2K": 100_000, "4K": 151_000}
    gpt_2 = {"low": 10_000, "medium": 50_000, "high": 210_000}
    gpt_15 = {"low": 9_000, "medium": 50_000, "high": 200_000}
    seedance = {"480p": 330_000, "720p": 660_000, "1080p": 990_000}
    wan = {"5": 500_000, "10": 1_000_000, "15": 1_500_000}
    return {
        "flux-2-pro/generate": {**flux_pro, "default": flux_pro["1 MP"]},
        "flux-2-max/generate": {**flux_max, "default": flux_max["1 MP"]},
        "flux-2-max/edit": {**flux_max, "default": flux_max["1 MP"]},
        "nano-banana-pro/generate": {**nano_pro, "default": nano_pro["1K"]},
        "nano-banana-pro/edit": {**nano_pro, "default": nano_pro["1K"]},
        "nano-banana/generate": {**nano, "default": nano["1K"]},
        "nano-banana/edit": {**nano, "default": nano["1K"]},
        "gpt-image-2/generate": {**gpt_2, "default": gpt_2["medium"]},
        "gpt-image-2/edit": {**gpt_2, "default": gpt_2["medium"]},
        "gpt-image-1.5/generate": {**gpt_15, "default": gpt_15["medium"]},
        "gpt-image-1.5/edit": {**gpt_15, "default": gpt_15["medium"]},
        "grok/generate": {"default": 70_000},
        "grok/edit": {"default": 22_000},
        "veo-3.1/generate": {"4": 1_600_000, "6": 2_400_000, "8": 3_200_000, "default": 3_200_000},
        "seedance/t2v": {**seedance, "default": seedance["720p"]},
        "seedance/i2v": {**seedance, "default": seedance["720p"]},
        "wan-2.6/t2v": {**wan, "default": wan["5"]},
        "wan-2.6/i2v": {**wan, "default": wan["5"]},
        "sora-2/generate": {"4": 400_000, "8": 800_000, "12": 1_200_000, "default": 400_000},
    }


def tier_of(route_key: str, body: dict[str, Any], table: dict[str, int]) -> str:
    """The price tier of ``body`` on ``route_key`` within ``table``: its tier field's value, else default.

    Example:
        >>> tier_of("sora-2/generate", {"seconds": 8}, {"8": 1, "default": 2})
        '8'
    """
    field = TIER_FIELDS.get(route_key)
    value = str(body.get(field)) if field is not None and field in body else None
    return value if value is not None and value in table else "default"
