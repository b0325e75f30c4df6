"""The published price ceilings of StableStudio's routes, used only to refuse implausible quotes.

The client never pays a price from here: it pays the live 402 quote. These figures are the highest price any
public source gave for each route (the model table in docs/decisions.md names them), so that a quote
far above them (an edit quoted at the route's $10 `maxPrice` because the server could not read the body) is
refused before signing (`WalletPolicy.check_plausible_price`). Routes not listed keep the per-call cap alone.

Example:
    >>> from prefect_stablestudio.client.prices import published_max_price
    >>> published_max_price("/api/generate/flux-2-pro/edit")
    60000
    >>> published_max_price("/api/generate/some-new-model/generate") is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PUBLISHED_MAX_PRICES", "published_max_price"]

PUBLISHED_MAX_PRICES: Mapping[str, int] = {
    # route (model/operation, or "upload") -> highest published price, atomic USDC (6 decimals)
    "upload": 10_000,  # $0.01, fixed
    "flux-2-pro/edit": 60_000,  # $0.03-0.06 by resolution
    "flux-2-pro/generate": 60_000,  # $0.02-0.04; an older source $0.05-0.06
    "flux-2-max/generate": 170_000,  # $0.04-0.17
    "flux-2-max/edit": 170_000,
    "nano-banana-pro/generate": 240_000,  # $0.13-0.24
    "nano-banana-pro/edit": 240_000,
    "nano-banana/generate": 151_000,  # $0.045-0.151
    "nano-banana/edit": 151_000,
    "gpt-image-2/generate": 210_000,  # $0.005-0.21
    "gpt-image-2/edit": 210_000,
    "gpt-image-1.5/generate": 200_000,  # $0.009-0.20
    "gpt-image-1.5/edit": 200_000,
    "grok/generate": 70_000,  # $0.07 generate, $0.022 edit: the model's higher figure for both
    "grok/edit": 70_000,
    "veo-3.1/generate": 3_200_000,  # $1.60-3.20
    "seedance/t2v": 990_000,  # $0.33-0.99
    "seedance/i2v": 990_000,
    "wan-2.6/t2v": 2_250_000,  # $0.34-1.02; a newer source $0.50-2.25
    "wan-2.6/i2v": 2_250_000,
    "sora-2/generate": 1_200_000,  # $0.40-1.20
}


def published_max_price(path: str) -> int | None:
    """The published price ceiling (atomic units) of the route at API path `path`, or None if unknown.

    `path` is `/api/upload` or `/api/generate/{model}/{operation}` (percent-encoding as sent).
    """
    clean = path.split("?", 1)[0].rstrip("/")
    if clean == "/api/upload":
        return PUBLISHED_MAX_PRICES["upload"]
    prefix = "/api/generate/"
    if not clean.startswith(prefix):
        return None
    return PUBLISHED_MAX_PRICES.get(clean[len(prefix) :])
