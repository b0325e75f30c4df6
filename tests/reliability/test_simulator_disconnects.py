"""A client that gives up during a slow fault leaves the simulator quiet: counted, no server traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from prefect_stablestudio.simulator import FaultRule


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_client_that_times_out_during_a_slow_fault_is_counted_not_a_crash(make_sim: Any) -> None:
    sim = make_sim(faults=(FaultRule(route="flux-edit", kind="slow", nth=(1,), delay=0.3),))
    errors = Errors()
    logging.getLogger("uvicorn.error").addHandler(errors)
    try:
        async with httpx.AsyncClient(timeout=0.05) as http:
            try:
                await http.post(f"{sim.base_url}/api/generate/flux-2-pro/edit", json={"prompt": "p"})
            except httpx.TimeoutException:
                pass
            else:
                raise AssertionError("the slow fault should have outlasted the client's timeout")
        for _ in range(500):  # the server notices when the fault's delay ends
            if sim.state()["counters"]["events"].get("client_disconnects"):
                break
            await asyncio.sleep(0.01)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(errors)
    assert sim.state()["counters"]["events"].get("client_disconnects") == 1
    assert not [m for m in errors.messages if "Exception in ASGI application" in m]
    assert sim.state()["counters"]["payments"] == 0
