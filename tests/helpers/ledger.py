"""Input images and reads of the simulator's ledger, for tests that pay through the Prefect layer."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

__all__ = ["EDIT_ROUTE", "UPLOAD_ROUTE", "payments", "png_bytes"]

EDIT_ROUTE = "flux-2-pro/edit"
UPLOAD_ROUTE = "upload"


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 24) -> bytes:
    """A small real PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def payments(sim: Any, address: str, route: str | None = None) -> list[dict[str, Any]]:
    """The simulator's settled payments of one wallet (optionally one route)."""
    return [
        p
        for p in sim.state()["ledger"]["payments"]
        if p["payer"].lower() == address.lower() and (route is None or p["route"] == route)
    ]
