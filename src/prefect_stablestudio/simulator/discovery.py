"""Discovery as @agentcash/router serves it: ``/openapi.json``, ``/llms.txt``, the route-not-found envelope.

``/openapi.json`` lists every route; each paid one carries ``x-payment-info`` with its price (``fixed``) or
price range (``dynamic``, 0 to the route's maxPrice): what a client can know before asking for a quote.

Example:
    >>> from prefect_stablestudio.simulator.settings import SimulatorSettings
    >>> doc = openapi_document(SimulatorSettings(), "http://127.0.0.1:8000")
    >>> doc["paths"]["/api/generate/flux-2-pro/edit"]["post"]["x-payment-info"]["price"]["max"]
    '10'
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from prefect_stablestudio.simulator.dialect import route_not_found
from prefect_stablestudio.simulator.responses import json_response
from prefect_stablestudio.simulator.settings import UPLOAD_OPERATION, SimulatorSettings, atomic_to_usdc
from prefect_stablestudio.simulator.state import SimulatorState
from prefect_stablestudio.simulator.validation import EDIT_SCHEMA, GENERATE_SCHEMA, UPLOAD_SCHEMA

__all__ = [
    "LLMS_TXT",
    "build_discovery_routes",
    "input_schema",
    "not_found",
    "not_found_handlers",
    "openapi_document",
]

LLMS_TXT = """# StableStudio (simulator)

Image and video generation, paid per call with x402 (USDC on Base) or MPP (Tempo).

- Upload an input image: POST /api/upload (paid), PUT the bytes to the blob API with the client token,
  then POST /api/upload/confirm (SIWX).
- Edit or generate: POST /api/generate/{model}/{operation} (paid); the 402 quote carries the price.
- Poll: GET /api/jobs/{id} (SIWX) until the status is complete or failed; download results at once.
- Prices and input schemas: /openapi.json (x-payment-info per paid route).
"""


def input_schema(route_key: str) -> dict[str, Any]:
    """The JSON schema of the body of ``route_key`` (``upload`` or ``model/operation``)."""
    if route_key == UPLOAD_OPERATION:
        return UPLOAD_SCHEMA
    return EDIT_SCHEMA if route_key == "flux-2-pro/edit" else GENERATE_SCHEMA


def _usd(atomic: int) -> str:
    return format(atomic_to_usdc(atomic), "f")


def _paid_operation(settings: SimulatorSettings, route_key: str, summary: str, tag: str) -> dict[str, Any]:
    tiers = settings.prices[route_key]
    if route_key == UPLOAD_OPERATION or len(tiers) == 1:
        price = {"mode": "fixed", "currency": "USD", "amount": _usd(next(iter(tiers.values())))}
    else:
        price = {"mode": "dynamic", "currency": "USD", "min": "0", "max": _usd(settings.max_price(route_key))}
    protocols: list[dict[str, Any]] = [{"x402": {}}]
    if settings.mpp:
        protocols.append(
            {"mpp": {"method": "tempo", "intent": "charge", "currency": settings.mpp_currency.lower()}}
        )
    schema = input_schema(route_key)
    return {
        "operationId": route_key.replace("/", "_"),
        "summary": summary,
        "tags": [tag],
        "x-payment-info": {"price": price, "protocols": protocols},
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"description": "Successful response"},
            "402": {"description": "Payment Required"},
        },
    }


def _siwx_operation(operation_id: str, summary: str, tag: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": [{"siwx": []}],
        "responses": {
            "200": {"description": "Successful response"},
            "402": {"description": "Authentication Required"},
        },
    }


def openapi_document(settings: SimulatorSettings, origin: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the simulator's StableStudio routes."""
    paths: dict[str, Any] = {
        "/api/upload": {"post": _paid_operation(settings, UPLOAD_OPERATION, "Upload a file", "Upload")},
        "/api/upload/confirm": {"post": _siwx_operation("upload_confirm", "Confirm an upload", "Upload")},
        "/api/jobs": {"get": _siwx_operation("jobs", "List your jobs", "Jobs")},
        "/api/jobs/{id}": {"get": _siwx_operation("jobs_{id}", "Get a job", "Jobs")},
    }
    for key in sorted(k for k in settings.prices if k != UPLOAD_OPERATION):
        model, operation = key.split("/", 1)
        paths[f"/api/generate/{key}"] = {
            "post": _paid_operation(settings, key, f"{model} - {operation}", "Generate")
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": settings.service_name,
            "description": "Image and video generation, paid per call (simulator).",
            "version": "1.0.0",
            "x-guidance": LLMS_TXT,
        },
        "servers": [{"url": origin}],
        "tags": [{"name": "Generate"}, {"name": "Jobs"}, {"name": "Upload"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"siwx": {"type": "apiKey", "in": "header", "name": "SIGN-IN-WITH-X"}}
        },
    }


def not_found(state: SimulatorState, request: Request) -> Response:
    """The route-not-found envelope for ``request``."""
    return json_response(route_not_found(state.origin, f"{state.origin}{request.url.path}"), 404)


def build_discovery_routes(state: SimulatorState) -> list[Route]:
    """``GET /openapi.json`` and ``GET /llms.txt``."""

    async def openapi(_: Request) -> Response:
        state.ledger.count(state.ledger.requests, "GET /openapi.json")
        return json_response(openapi_document(state.settings, state.origin))

    async def llms(_: Request) -> Response:
        state.ledger.count(state.ledger.requests, "GET /llms.txt")
        return PlainTextResponse(LLMS_TXT)

    return [Route("/openapi.json", openapi, methods=["GET"]), Route("/llms.txt", llms, methods=["GET"])]


def not_found_handlers(state: SimulatorState) -> dict[Any, Any]:
    """Starlette exception handlers answering an unknown path (404) or method (405) with the envelope."""

    async def handler(request: Request, _: HTTPException) -> Response:
        return not_found(state, request)

    return {404: handler, 405: handler}
