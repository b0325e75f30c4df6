"""A stand-in Tempo JSON-RPC endpoint (``POST /_sim/tempo-rpc``): what an MPP client asks before signing.

pympp 0.16.0 asks for the chain id, the gas price and a gas estimate, and, for fee tokens it must pick, a
TIP-20 ``balanceOf`` (``eth_call``). Nothing is ever broadcast: the simulator settles the signed transaction
in its own ledger when the credential arrives.

Example:
    >>> from prefect_stablestudio.simulator.tempo_rpc import GAS_PRICE
    >>> GAS_PRICE > 0
    True
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prefect_stablestudio.simulator.responses import json_response
from prefect_stablestudio.simulator.state import SimulatorState

GAS_PRICE = 20_000_000_000  # attodollars per gas: a plausible Tempo base fee
GAS_ESTIMATE = 300_000
_BALANCE_OF = "0x70a08231"


def _answer(state: SimulatorState, method: str, params: list[Any]) -> Any:
    settings = state.settings
    if method == "eth_chainId":
        return hex(settings.mpp_chain_id)
    if method in ("eth_gasPrice", "eth_maxPriorityFeePerGas"):
        return hex(GAS_PRICE)
    if method == "eth_estimateGas":
        return hex(GAS_ESTIMATE)
    if method == "eth_getTransactionCount":
        return "0x0"  # expiring nonces: the sequential nonce is never used
    if method == "eth_blockNumber":
        return "0x1"
    if method == "eth_call" and params and isinstance(params[0], dict):
        data = str(params[0].get("data", ""))
        if data.startswith(_BALANCE_OF) and len(data) == 74:
            owner = "0x" + data[-40:]
            balance = state.ledger.balance(owner, f"tempo:{settings.mpp_chain_id}")
            return "0x" + balance.to_bytes(32, "big").hex()
    raise LookupError(method)


def build_tempo_rpc_routes(state: SimulatorState) -> list[Route]:
    """The stand-in RPC route."""

    async def rpc(request: Request) -> Response:
        try:
            call = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            error = {"code": -32700, "message": "parse error"}
            return json_response({"jsonrpc": "2.0", "id": None, "error": error})
        method = str(call.get("method", "")) if isinstance(call, dict) else ""
        params = call.get("params") if isinstance(call, dict) else None
        state.ledger.count(state.ledger.events, f"tempo_rpc:{method}")
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.get("id") if isinstance(call, dict) else None}
        try:
            reply["result"] = _answer(state, method, params if isinstance(params, list) else [])
        except LookupError:
            reply["error"] = {"code": -32601, "message": f"method not simulated: {method}"}
        return json_response(reply)

    return [Route("/_sim/tempo-rpc", rpc, methods=["POST"])]
