"""The simulator's own routes under ``/_sim/``: read state, fund wallets, replace faults, reset."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prefect_stablestudio.simulator.faults import FaultRule
from prefect_stablestudio.simulator.responses import json_response
from prefect_stablestudio.simulator.settings import atomic_to_usdc, usdc_to_atomic
from prefect_stablestudio.simulator.state import SimulatorState


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _bad(message: str) -> Response:
    return json_response({"error": "validation_error", "message": message}, 400)


def build_control_routes(state: SimulatorState) -> list[Route]:
    """``GET /_sim/state``, ``GET /_sim/info``, ``POST /_sim/fund``, ``POST /_sim/faults``,
    ``POST /_sim/reset``."""

    async def get_state(_: Request) -> Response:
        return json_response(state.snapshot())

    async def get_info(_: Request) -> Response:
        # How a client (`wallet create --base-url`) finds the blob API without being told.
        return json_response({"simulator": True, "blobApiUrl": f"{state.origin}/api/blob"})

    async def fund(request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("address"), str):
            return _bad('expected {"address": "0x...", "amount": "<USDC>"}')
        try:
            atomic = usdc_to_atomic(Decimal(str(body.get("amount"))))
        except (InvalidOperation, ValueError):
            return _bad("amount must be a decimal USDC amount with at most 6 decimals")
        balance = state.ledger.fund(body["address"], atomic)
        return json_response(
            {"address": body["address"], "balance": balance, "balance_usdc": str(atomic_to_usdc(balance))}
        )

    async def faults(request: Request) -> Response:
        body = await _json(request)
        rules_raw = body.get("rules") if isinstance(body, dict) else body
        seed = body.get("seed") if isinstance(body, dict) else None
        if not isinstance(rules_raw, list) or (seed is not None and not isinstance(seed, int)):
            return _bad('expected a list of rules or {"rules": [...], "seed": <int>}')
        try:
            rules = [FaultRule.model_validate(r) for r in rules_raw]
        except ValidationError as exc:
            return _bad(str(exc))
        state.set_faults(rules, seed)
        return json_response({"faults": [r.model_dump(mode="json") for r in rules]})

    async def reset(_: Request) -> Response:
        state.reset()
        return json_response({"reset": True})

    return [
        Route("/_sim/state", get_state, methods=["GET"]),
        Route("/_sim/info", get_info, methods=["GET"]),
        Route("/_sim/fund", fund, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
    ]
