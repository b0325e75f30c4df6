"""Serve any ASGI app on 127.0.0.1 in a background thread (purpose-built servers: hostile, broken...)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(app: Any, *, date_header: bool = True) -> Iterator[str]:
    """Serve `app` on a free loopback port; yield its base URL once it accepts connections.

    `date_header=False` leaves the `Date` header to the app (a test that plays a server with another clock).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1, date_header=date_header
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    ready = threading.Event()

    async def serve() -> None:
        task = server.serve(sockets=[sock])
        await task

    def run() -> None:
        import asyncio

        loop = asyncio.new_event_loop()

        async def main() -> None:
            serving = asyncio.ensure_future(serve())
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            ready.set()
            await serving

        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10) or not server.started:
        raise RuntimeError("test server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
