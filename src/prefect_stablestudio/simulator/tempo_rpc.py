"""Stand-in JSON-RPC endpoints: Tempo (``POST /_sim/tempo-rpc``) and Base (``POST /_sim/rpc/base``).

Both answer ``eth_call`` to ``balanceOf(address)`` and ``authorizationState(address,bytes32)`` (EIP-3009)
from the ledger of their network, whatever the token address (and whatever block is named: the ledger is
always current): a client's pre-flight reads a real balance here, and a client resolving a lost reply reads
whether its authorization settled. Base also answers ``eth_getBlockByNumber`` with a block stamped now, or
later after ``Simulator.advance_chain_clock`` (the chain clock a client judges ``validBefore`` by).

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
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prefect_stablestudio.simulator.responses import json_response
from prefect_stablestudio.simulator.state import SimulatorState

GAS_PRICE = 20_000_000_000  # attodollars per gas: a plausible Tempo base fee
GAS_ESTIMATE = 300_000
_BALANCE_OF = "0x70a08231"
_AUTHORIZATION_STATE = "0xe94a0102"
BASE_CHAIN_ID = 8453
_BASE = "eip155:8453"


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _call(state: SimulatorState, network: str, params: list[Any]) -> str:
    """``eth_call`` of a token on ``network``, from the ledger."""
    data = str(params[0].get("data", "")) if params and isinstance(params[0], dict) else ""
    if data.startswith(_BALANCE_OF) and len(data) == 74:
        return _word(state.ledger.balance("0x" + data[-40:], network))
    if data.startswith(_AUTHORIZATION_STATE) and len(data) == 138:
        authorizer, nonce = "0x" + data[34:74], "0x" + data[74:]
        return _word(int(state.ledger.nonce_used(authorizer, nonce, network)))
    raise LookupError("eth_call")


def _answer_base(state: SimulatorState, method: str, params: list[Any]) -> Any:
    if method == "eth_chainId":
        return hex(BASE_CHAIN_ID)
    if method == "eth_blockNumber":
        return "0x1"
    if method == "eth_getBlockByNumber":
        return {"number": "0x1", "timestamp": hex(state.chain_time()), "transactions": []}
    if method == "eth_call":
        return _call(state, _BASE, params)
    raise LookupError(method)


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
    if method == "eth_call":
        return _call(state, f"tempo:{settings.mpp_chain_id}", params)
    raise LookupError(method)


def build_tempo_rpc_routes(state: SimulatorState) -> list[Route]:
    """The stand-in RPC routes (Tempo and Base)."""

    def endpoint(name: str, answer: Callable[[SimulatorState, str, list[Any]], Any]) -> Route:
        async def rpc(request: Request) -> Response:
            return await _serve(state, request, name, answer)

        return Route(f"/_sim/{name}", rpc, methods=["POST"])

    return [endpoint("tempo-rpc", _answer), endpoint("rpc/base", _answer_base)]


async def _serve(
    state: SimulatorState,
    request: Request,
    name: str,
    answer: Callable[[SimulatorState, str, list[Any]], Any],
) -> Response:
    try:
        call = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        error = {"code": -32700, "message": "parse error"}
        return json_response({"jsonrpc": "2.0", "id": None, "error": error})
    method = str(call.get("method", "")) if isinstance(call, dict) else ""
    params = call.get("params") if isinstance(call, dict) else None
    counter = "tempo_rpc" if name == "tempo-rpc" else "base_rpc"
    state.ledger.count(state.ledger.events, f"{counter}:{method}")
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.get("id") if isinstance(call, dict) else None}
    try:
        reply["result"] = answer(state, method, params if isinstance(params, list) else [])
    except LookupError:
        reply["error"] = {"code": -32601, "message": f"method not simulated: {method}"}
    return json_response(reply)
