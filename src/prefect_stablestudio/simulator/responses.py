"""Response shapes: JSON answers, 402 challenges, broken bodies and dropped connections."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from prefect_stablestudio.simulator.encoding import b64_json

NO_STORE = {"Cache-Control": "no-store"}
# What a dropped response announces: a body of this size that never comes.
DROPPED_CONTENT_LENGTH = 1024


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON with the given status and headers."""
    return Response(json.dumps(body, separators=(",", ":")), status, headers, media_type="application/json")


def payment_required(
    challenge: dict[str, Any], body: Any, extra_headers: dict[str, str] | None = None
) -> Response:
    """A 402 carrying ``challenge`` in PAYMENT-REQUIRED, never cached; ``body`` None sends an empty body (the
    router's quote: everything is in the header)."""
    headers = {**NO_STORE, "PAYMENT-REQUIRED": b64_json(challenge), **(extra_headers or {})}
    if body is None:
        return Response(b"", 402, headers, media_type="application/json")
    return json_response(body, 402, headers)


def malformed(response: Response) -> Response:
    """The same status and headers with the body cut in half, so it no longer parses as JSON."""
    body = bytes(response.body)
    broken = body[: len(body) // 2] if len(body) > 2 else b'{"'
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
    }
    return Response(broken, response.status_code, headers, media_type="application/json")


class DroppedConnection(Response):
    """Sends the status line and headers announcing a body, then ends the ASGI call without the body.

    uvicorn then logs "ASGI callable returned without completing response" and closes the transport. A
    client sees the connection close mid-response: httpx raises ``httpx.RemoteProtocolError`` ("peer closed
    connection without sending complete message body: received 0 bytes, expected 1024") and returns no
    response object.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(DROPPED_CONTENT_LENGTH).encode()),
                ],
            }
        )
