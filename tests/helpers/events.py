"""Read Prefect events back through the API's events filter endpoint (50 a page; pages followed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker


async def restart_events_worker() -> None:
    """Stop Prefect's events workers (after sending what they hold), so the next event starts one for the API
    now configured: a running worker keeps the API URL it started with (the worker is keyed by client type,
    not URL), and tests switch between the session's API and a `prefect server start` of their own."""
    await EventsWorker.drain_all()  # type: ignore[misc]


async def read_events(prefix: str, resource_id: str) -> list[dict[str, Any]]:
    """Every event named `prefix`... about the resource `resource_id` (in the last hour, the default)."""
    body = {"filter": {"event": {"prefix": [prefix]}, "resource": {"id": [resource_id]}}, "limit": 50}
    events: list[dict[str, Any]] = []
    async with get_client() as client:
        response = await client._client.post("/events/filter", json=body)
        while True:
            response.raise_for_status()
            page = response.json()
            events.extend(page["events"])
            if not page.get("next_page"):
                return events
            response = await client._client.get(page["next_page"])


async def events_when(
    prefix: str, resource_id: str, enough: Any, *, deadline_seconds: float = 60.0
) -> list[dict[str, Any]]:
    """`read_events` again until `enough(events)` holds; fails after `deadline_seconds` (a deadline, no sleep
    standing in for synchronisation: each pass re-reads the server)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        events = await read_events(prefix, resource_id)
        if enough(events):
            return events
        assert time.monotonic() < deadline, f"{len(events)} {prefix}* events of {resource_id} only"
        await asyncio.sleep(0.25)
