"""Chain reads (`client/chain.py`) against the simulator's stand-in RPCs and a purpose-built hostile RPC on
127.0.0.1: real balances and nonce states are read; every bad answer is a clear `RpcError`, never a number."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from prefect_stablestudio.client import StableStudioClient
from prefect_stablestudio.client.chain import authorization_state, balance_of
from prefect_stablestudio.client.errors import RpcError
from prefect_stablestudio.client.policy import BASE_USDC, TEMPO_USDC_E
from tests.client.helpers import image_bytes

OWNER = "0x" + "ab" * 20
WORD_42 = "0x" + "0" * 62 + "2a"


def hostile_rpc(answer: Callable[[dict[str, Any]], Response]) -> Starlette:
    """An RPC that answers every call with `answer(call)`."""

    async def rpc(request: Request) -> Response:
        return answer(json.loads(await request.body()))

    return Starlette(routes=[Route("/", rpc, methods=["POST"])])


def reply(call: dict[str, Any], **fields: Any) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": call["id"], **fields})


async def test_balance_and_nonce_state_read_from_the_simulator_rpcs(sim: Any) -> None:
    account = Account.create()
    sim.fund(account.address, Decimal("-99.25"))  # unseen wallets start with $100
    base_rpc = f"{sim.base_url}/_sim/rpc/base"

    assert await balance_of(base_rpc, BASE_USDC.address, account.address) == 750_000
    tempo = await balance_of(f"{sim.base_url}/_sim/tempo-rpc", TEMPO_USDC_E, account.address)
    assert tempo == 100_000_000  # the Tempo ledger is kept apart

    key = "0x" + bytes(account.key).hex()
    async with StableStudioClient(key, base_url=sim.base_url, blob_api_url=sim.blob_api_url) as client:
        blob = await client.upload_detailed(image_bytes())
    (payment,) = blob.payments
    assert await authorization_state(base_rpc, BASE_USDC.address, account.address, payment.nonce) is True
    unused = "0x" + "11" * 32
    assert await authorization_state(base_rpc, BASE_USDC.address, account.address, unused) is False
    fresh = await balance_of(base_rpc, BASE_USDC.address, account.address, fresh=True)
    assert fresh == 750_000 - payment.amount


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (lambda call: reply(call, result="0xnot-hex"), "not one 32-byte hex word"),
        (lambda call: reply(call, result="0x2a"), "not one 32-byte hex word"),
        (lambda call: reply(call, result=42), "not one 32-byte hex word"),
        (lambda call: reply(call, error={"code": -32000, "message": "reverted"}), "refused eth_call"),
        (lambda call: reply(call, error="boom"), "refused eth_call: boom"),
        (lambda call: JSONResponse({"jsonrpc": "2.0", "id": -1, "result": WORD_42}), "answered id"),
        (lambda call: JSONResponse({"jsonrpc": "2.0", "id": call["id"]}), "neither a result nor an error"),
        (lambda call: JSONResponse({"id": call["id"], "result": WORD_42}), "not a JSON-RPC 2.0 reply"),
        (lambda call: PlainTextResponse("<html>gateway</html>"), "not JSON"),
        (lambda call: PlainTextResponse("busy", status_code=503), "HTTP 503"),
    ],
)
async def test_a_hostile_rpc_answer_is_a_clear_error_never_a_balance(
    serve_app: Any, answer: Callable[[dict[str, Any]], Response], says: str
) -> None:
    url = serve_app(hostile_rpc(answer))
    with pytest.raises(RpcError, match=says) as raised:
        await balance_of(url, BASE_USDC.address, OWNER, fresh=True)
    assert raised.value.rpc_url == url


async def test_authorization_state_refuses_a_word_that_is_not_a_bool(serve_app: Any) -> None:
    url = serve_app(hostile_rpc(lambda call: reply(call, result=WORD_42)))
    with pytest.raises(RpcError, match="not a bool"):
        await authorization_state(url, BASE_USDC.address, OWNER, "0x" + "22" * 32)


async def test_bad_arguments_are_refused_before_any_request(serve_app: Any) -> None:
    calls: list[dict[str, Any]] = []

    def record(call: dict[str, Any]) -> Response:
        calls.append(call)
        return reply(call, result=WORD_42)

    url = serve_app(hostile_rpc(record))
    with pytest.raises(ValueError, match="owner"):
        await balance_of(url, BASE_USDC.address, "0x1234")
    with pytest.raises(ValueError, match="nonce"):
        await authorization_state(url, BASE_USDC.address, OWNER, "0x12")
    with pytest.raises(ValueError, match="https"):
        await balance_of("http://rpc.example.com", BASE_USDC.address, OWNER)
    assert calls == []
    assert await balance_of(url, BASE_USDC.address, OWNER, fresh=True) == 42
    assert calls[0]["method"] == "eth_call" and calls[0]["params"][0]["data"].startswith("0x70a08231")
