"""Helpers for these tests."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_stablestudio.client.encoding import encode_b64_json
from tests.client.helpers import payment_required, requirement

OTHER_PAY_TO = "0x" + "7" * 40


def requote_with(pay_to: str, reason: str) -> Any:
    """Refuse the signed request and quote again, now naming another recipient."""

    async def behaviour(request: Request, n: int) -> Response:
        pr = payment_required(str(request.url), [requirement(payTo=pay_to)])
        pr["error"] = reason
        return JSONResponse(
            {"error": reason, "message": "pay the new address"},
            status_code=402,
            headers={"PAYMENT-REQUIRED": encode_b64_json(pr)},
        )

    return behaviour
