"""Reservations under load: Prefect's "database busy" 503 is retried in milliseconds, and the record of
ensured limits never lets a vanished limit go uncounted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from prefect.client.orchestration import get_client

from prefect_stablestudio.blocks.budget import SpendBudget, total_limit_name
from prefect_stablestudio.blocks.prefect_http import increment_caps


@contextlib.asynccontextmanager
async def busy_server(busy_answers: int) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback HTTP server that answers 503 `busy_answers` times, then 200 with an increment reply.

    Purpose-built because Prefect's server answers 503 only when two SQLite writes race, which a test cannot
    provoke deterministically.
    """
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            seen.append(head.split(b" ")[1].decode())
            if len(seen) <= busy_answers:
                status, body = b"503 Service Unavailable", b'{"exception_message":"Service Unavailable"}'
            else:
                status, body = b"200 OK", b'[{"id":"1","name":"day","limit":1}]'
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api", seen
    finally:
        server.close()


class _Client:
    """What `increment_caps` uses of a PrefectClient: its HTTP session."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._client = http

    async def increment_concurrency_slots(self, **_: Any) -> httpx.Response:
        raise AssertionError("the retrying Prefect wrapper must not be used")


async def test_busy_answers_are_retried_by_us_not_after_prefects_seconds_of_backoff() -> None:
    async with busy_server(busy_answers=3) as (url, seen), httpx.AsyncClient(base_url=url) as http:
        response = await asyncio.wait_for(increment_caps(_Client(http), ["day"], 5), timeout=5)
    assert response.json() == [{"id": "1", "name": "day", "limit": 1}]
    assert seen == ["/api/v2/concurrency_limits/increment"] * 4


async def test_another_error_is_raised_at_once() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9/api") as http:
        with pytest.raises(httpx.ConnectError):
            await increment_caps(_Client(http), ["day"], 5)


@pytest.mark.usefixtures("prefect_api")
async def test_many_reservations_at_once_all_count() -> None:
    budget = SpendBudget(Account.create().address, lifetime=1_000_000)
    await asyncio.gather(*(budget.reserve(10_000) for _ in range(30)))
    assert (await budget.remaining())["lifetime"] == 700_000


@pytest.mark.usefixtures("prefect_api")
async def test_a_limit_deleted_behind_this_process_s_back_is_created_again_and_counted() -> None:
    address = Account.create().address
    await SpendBudget(address, lifetime=100_000).reserve(10_000)
    async with get_client() as client:
        await client.delete_global_concurrency_limit_by_name(total_limit_name(address))
    # A fresh budget trusts the record of the first one, finds the limit gone, and ensures it again.
    budget = SpendBudget(address, lifetime=100_000)
    await budget.reserve(20_000)
    assert (await budget.remaining())["lifetime"] == 80_000
