"""Running the simulator: in the caller's event loop, in a thread of its own, or until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from decimal import Decimal
from typing import Any

import uvicorn

from prefect_stablestudio.simulator.app import create_app
from prefect_stablestudio.simulator.faults import FaultRule
from prefect_stablestudio.simulator.settings import SimulatorSettings, usdc_to_atomic
from prefect_stablestudio.simulator.state import SimulatorState

STARTUP_TIMEOUT_SECONDS = 10.0


class Simulator:
    """A running simulator: its URLs and the in-process API over its state (safe to call from any thread).

    Example:
        >>> async def demo() -> None:
        ...     async with run_simulator(SimulatorSettings(latency_seconds=0.2)) as sim:
        ...         sim.fund("0x00000000000000000000000000000000000000aa", Decimal("5"))
        ...         print(sim.state()["counters"]["payments"])
    """

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the origin StableStudio's routes are served at."""
        return self._state.origin

    @property
    def blob_api_url(self) -> str:
        """The Vercel Blob stand-in (``PUT {blob_api_url}/?pathname=...``)."""
        return f"{self._state.origin}/api/blob"

    @property
    def settings(self) -> SimulatorSettings:
        """The settings it was started with."""
        return self._state.settings

    def state(self) -> dict[str, Any]:
        """A snapshot: counters, ledger (payer, amount, nonce, tx, route, id per payment), balances, spend."""
        return self._state.snapshot()

    def fund(self, address: str, amount: Decimal) -> int:
        """Add ``amount`` USDC to ``address``; returns the new balance in atomic units."""
        return self._state.ledger.fund(address, usdc_to_atomic(amount))

    def balance(self, address: str) -> int:
        """The atomic balance of ``address`` (the default balance if it was never seen)."""
        return self._state.ledger.balance(address)

    def set_faults(self, plan: Sequence[FaultRule], seed: int | None = None) -> None:
        """Replace the fault plan (counters and streams restart; ``seed`` defaults to the settings')."""
        self._state.set_faults(plan, seed)

    def reset(self) -> None:
        """Forget jobs, uploads, blobs, payments and counters; restore the settings' balances and faults."""
        self._state.reset()

    def advance_chain_clock(self, seconds: float) -> None:
        """Stamp the Base RPC's blocks ``seconds`` later (cumulative; ``reset`` clears it): time passing on
        the chain, as a client judging whether an authorization expired sees it, without waiting for it.
        Payments are still verified by the wall clock."""
        self._state.chain_clock_offset += seconds


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling: an embedding program or test runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _DroppedResponseFilter(logging.Filter):
    """Hides uvicorn's error line for responses the fault plan drops on purpose (they are counted instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


def _bind(settings: SimulatorSettings) -> tuple[socket.socket, SimulatorState]:
    # proto must be IPPROTO_TCP: asyncio only disables Nagle on accepted sockets whose proto says TCP,
    # and with Nagle on every response split into several writes waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.setblocking(False)
    host, port = sock.getsockname()[:2]
    return sock, SimulatorState(settings, f"http://{host}:{port}")


def _server(state: SimulatorState, server_class: type[uvicorn.Server]) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(state),
        log_level=state.settings.log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        backlog=2048,
    )
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DroppedResponseFilter) for f in error_logger.filters):
        error_logger.addFilter(_DroppedResponseFilter())
    return server_class(config)


@contextlib.asynccontextmanager
async def run_simulator(settings: SimulatorSettings | None = None) -> AsyncIterator[Simulator]:
    """Serve a simulator in the current event loop for the duration of the block.

    Example:
        >>> async def demo() -> None:
        ...     async with run_simulator(SimulatorSettings(latency_seconds=0.2)) as sim:
        ...         print(sim.base_url)
    """
    sock, state = _bind(settings or SimulatorSettings())
    server = _server(state, _EmbeddedServer)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the simulator stopped during startup")
                await asyncio.sleep(0.01)
        yield Simulator(state)
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def run_simulator_in_thread(settings: SimulatorSettings | None = None) -> Iterator[Simulator]:
    """Serve a simulator from a thread with its own event loop; usable from sync code and any event loop.

    Example:
        >>> with run_simulator_in_thread(SimulatorSettings(latency_seconds=0.2)) as sim:
        ...     sim.base_url.startswith("http://127.0.0.1:")
        True
    """
    sock, state = _bind(settings or SimulatorSettings())
    server = _server(state, _EmbeddedServer)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=serve, name="stablestudio-simulator", daemon=True)
    thread.start()
    try:
        started = threading.Event()
        while not server.started and thread.is_alive():
            started.wait(0.01)
        if not server.started:
            raise RuntimeError("the simulator did not start") from (failure[0] if failure else None)
        yield Simulator(state)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECONDS)
        sock.close()


def serve_forever(settings: SimulatorSettings, on_ready: Callable[[Simulator], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), calling ``on_ready(simulator)`` once it listens."""
    sock, state = _bind(settings)
    server = _server(state, uvicorn.Server)
    if on_ready is not None:
        # The socket already listens: connections made from here on wait in its backlog until uvicorn accepts.
        on_ready(Simulator(state))
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
