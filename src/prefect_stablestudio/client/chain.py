"""Read-only chain queries over plain JSON-RPC: a token balance (`balanceOf`) and an EIP-3009 nonce's state;
and what a payment's nonce state means for a call whose reply was lost (`judge_authorization`).

No web3 stack: one `eth_call` with hand-encoded calldata, answered by one 32-byte word. The answer is checked
strictly (JSON-RPC 2.0, our id, no error object, `0x` + exactly 64 hex digits): a hostile or broken node
gives `RpcError`, never a silent zero balance or a nonce wrongly read as unused. Balances are cached for a few
seconds per (node, token, owner), so a pre-flight and the CLI do not ask twice in a row.

Example:
    >>> from prefect_stablestudio.client.chain import balance_of_calldata, decode_word
    >>> balance_of_calldata("0x" + "ab" * 20)[:10]
    '0x70a08231'
    >>> decode_word("0x" + "0" * 62 + "2a", rpc_url="http://127.0.0.1:1")
    42
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any, Literal

import httpx

from prefect_stablestudio.client._http import check_url, tls_context
from prefect_stablestudio.client.errors import RpcError

__all__ = [
    "BALANCE_CACHE_SECONDS",
    "VERDICT_BLOCK",
    "ChainState",
    "authorization_state",
    "authorization_state_calldata",
    "authorization_verdict",
    "balance_of",
    "balance_of_calldata",
    "block_time",
    "decode_word",
    "judge_authorization",
]

ChainState = Literal["settled", "still_valid", "expired_unused", "unknown"]
"""What the token says about a signed EIP-3009 authorization whose reply was lost:

- `settled`: the nonce is used, the money moved: never pay again; resume by finding the job.
- `still_valid`: unused, and `validBefore` not reached: it can still move money (a delivery may be in flight),
  so no new signature; re-send the same one (it moves money at most once).
- `expired_unused`: unused after `validBefore`: it can never move money, so a new signature is safe.
- `unknown`: the chain was not asked (no RPC URL for the payment's network, an MPP payment) or did not answer.
"""

BALANCE_CACHE_SECONDS = 5.0
"""How long a balance read is reused: long enough for a pre-flight and its summary, short enough to see a
payment that just settled."""

_BALANCE_OF = "0x70a08231"  # balanceOf(address)
_AUTHORIZATION_STATE = "0xe94a0102"  # authorizationState(address,bytes32), EIP-3009
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_WORD = re.compile(r"^0x[0-9a-fA-F]{64}$")
_QUANTITY = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
VERDICT_BLOCK = "safe"
"""The block an authorization's state is judged at: "safe" (on Base, derived from data posted to L1, about a
minute behind the head), so a reorganisation cannot undo what the verdict saw."""
_TIMEOUT = 10.0
_ids = itertools.count(1)
_balances: dict[tuple[str, str, str], tuple[float, int]] = {}


def _address_word(address: str, what: str) -> str:
    if not _ADDRESS.match(address):
        raise ValueError(f"{what} must be a 0x-prefixed 20-byte hex address, not {address[:50]!r}")
    return address[2:].lower().rjust(64, "0")


def balance_of_calldata(owner: str) -> str:
    """Calldata of `balanceOf(owner)`."""
    return _BALANCE_OF + _address_word(owner, "owner")


def authorization_state_calldata(authorizer: str, nonce: str) -> str:
    """Calldata of `authorizationState(authorizer, nonce)` (EIP-3009; `nonce` is 0x + 64 hex digits)."""
    if not _BYTES32.match(nonce):
        raise ValueError(f"nonce must be 0x + 64 hex digits, not {nonce[:70]!r}")
    return _AUTHORIZATION_STATE + _address_word(authorizer, "authorizer") + nonce[2:].lower()


def decode_word(result: Any, *, rpc_url: str) -> int:
    """One ABI word (`uint256`, `bool`) from an `eth_call` result.

    Raises:
        RpcError: the result is not `0x` followed by exactly 64 hex digits.
    """
    if not isinstance(result, str) or not _WORD.match(result):
        raise RpcError(
            f"RPC {rpc_url} answered eth_call with {str(result)[:80]!r}, not one 32-byte hex word",
            rpc_url=rpc_url,
        )
    return int(result, 16)


async def _rpc(rpc_url: str, method: str, params: list[Any], http: httpx.AsyncClient | None) -> Any:
    """One JSON-RPC call; its `result`, checked to be an answer to this very call."""
    check_url(rpc_url, "rpc_url")
    call_id = next(_ids)
    call = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
    try:
        if http is None:
            async with _own_client() as own:
                reply = await own.post(rpc_url, json=call)
        else:
            reply = await http.post(rpc_url, json=call)
    except httpx.HTTPError as exc:
        raise RpcError(f"RPC {rpc_url} did not answer ({type(exc).__name__})", rpc_url=rpc_url) from None
    if reply.status_code != 200:
        raise RpcError(f"RPC {rpc_url} answered HTTP {reply.status_code}", rpc_url=rpc_url)
    try:
        body = reply.json()
    except ValueError:
        raise RpcError(f"RPC {rpc_url} answered something that is not JSON", rpc_url=rpc_url) from None
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise RpcError(f"RPC {rpc_url} answered something that is not a JSON-RPC 2.0 reply", rpc_url=rpc_url)
    if body.get("id") != call_id:
        raise RpcError(
            f"RPC {rpc_url} answered id {str(body.get('id'))[:40]!r} to call {call_id}", rpc_url=rpc_url
        )
    if "error" in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise RpcError(f"RPC {rpc_url} refused {method}: {str(message)[:200]}", rpc_url=rpc_url)
    if "result" not in body:
        raise RpcError(f"RPC {rpc_url} answered neither a result nor an error", rpc_url=rpc_url)
    return body["result"]


def _own_client() -> httpx.AsyncClient:
    # The process's shared TLS context: a new one parses the CA bundle again (~20 ms of CPU per client).
    return httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False, verify=tls_context())


async def _eth_call(
    rpc_url: str, to: str, data: str, http: httpx.AsyncClient | None, block: str = "latest"
) -> int:
    _address_word(to, "token")
    result = await _rpc(rpc_url, "eth_call", [{"to": to, "data": data}, block], http)
    return decode_word(result, rpc_url=rpc_url)


def _quantity(value: Any, what: str, rpc_url: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise RpcError(
            f"RPC {rpc_url} answered {what} {str(value)[:40]!r}, not a hex quantity", rpc_url=rpc_url
        )
    return int(value, 16)


async def block_time(
    rpc_url: str, *, tag: str = "latest", http: httpx.AsyncClient | None = None
) -> tuple[int, int]:
    """The chain's block `tag` ("latest", "safe", ...): (number, timestamp in unix seconds), from
    `eth_getBlockByNumber`.

    Raises:
        RpcError: the node is unreachable (or does not know the tag), or its answer has no hex `number` and
            `timestamp`.
    """
    block = await _rpc(rpc_url, "eth_getBlockByNumber", [tag, False], http)
    if not isinstance(block, dict):
        raise RpcError(f"RPC {rpc_url} answered the {tag} block with {str(block)[:80]!r}", rpc_url=rpc_url)
    return (
        _quantity(block.get("number"), "block number", rpc_url),
        _quantity(block.get("timestamp"), "block timestamp", rpc_url),
    )


async def balance_of(
    rpc_url: str, token: str, owner: str, *, http: httpx.AsyncClient | None = None, fresh: bool = False
) -> int:
    """`owner`'s balance of `token`, atomic units (cached `BALANCE_CACHE_SECONDS` unless `fresh`).

    Raises:
        ValueError: `token` or `owner` is not an address, or `rpc_url` not an https (or loopback) URL;
            before any request.
        RpcError: the node is unreachable or its answer is not a valid `eth_call` result.

    Example:
        ```python
        balance = await balance_of("https://mainnet.base.org", BASE_USDC.address, wallet.address)
        print(dollars_from_atomic(balance))
        ```
    """
    key = (rpc_url, token.lower(), owner.lower())
    now = time.monotonic()
    cached = _balances.get(key)
    if cached is not None and not fresh and now - cached[0] < BALANCE_CACHE_SECONDS:
        return cached[1]
    balance = await _eth_call(rpc_url, token, balance_of_calldata(owner), http)
    _balances[key] = (now, balance)
    return balance


async def authorization_state(
    rpc_url: str, token: str, authorizer: str, nonce: str, *, http: httpx.AsyncClient | None = None
) -> bool:
    """Whether `authorizer`'s EIP-3009 authorization `nonce` was used (or cancelled) on `token`. Never cached.

    Raises:
        ValueError: a malformed address or nonce (before any request).
        RpcError: the node is unreachable, or answers anything but a 0 or 1 word.
    """
    return await _authorization_used(rpc_url, token, authorizer, nonce, http, "latest")


async def _authorization_used(
    rpc_url: str, token: str, authorizer: str, nonce: str, http: httpx.AsyncClient | None, block: str
) -> bool:
    word = await _eth_call(rpc_url, token, authorization_state_calldata(authorizer, nonce), http, block)
    if word not in (0, 1):
        raise RpcError(f"RPC {rpc_url} answered authorizationState with {word}, not a bool", rpc_url=rpc_url)
    return word == 1


async def authorization_verdict(
    rpc_url: str,
    token: str,
    authorizer: str,
    nonce: str,
    valid_before: int,
    *,
    http: httpx.AsyncClient | None = None,
) -> ChainState:
    """`judge_authorization` of a signed authorization, read from the chain itself.

    The state is read at the chain's "safe" block (`VERDICT_BLOCK`) and judged against that block's timestamp,
    not this machine's clock: a fast local clock, a node some blocks behind, or a reorganised unsafe head can
    then never make an authorization that may still settle look expired (a block at or past `validBefore`
    holds every transfer the authorization could ever make). The price: "expired" is seen a minute or so
    after `validBefore` on Base. The node is trusted for this answer: use one you trust. Never "unknown": a
    node that does not answer raises.

    Raises:
        ValueError: a malformed address or nonce (before any request).
        RpcError: the node is unreachable or answers anything unusable.

    Example:
        ```python
        state = await authorization_verdict(rpc, payment.asset, payment.payer, payment.nonce,
                                            payment.valid_before)
        ```
    """
    authorization_state_calldata(authorizer, nonce)  # checks both before any request
    check_url(rpc_url, "rpc_url")
    if http is None:
        async with _own_client() as own:  # one connection for both calls
            return await authorization_verdict(rpc_url, token, authorizer, nonce, valid_before, http=own)
    number, timestamp = await block_time(rpc_url, tag=VERDICT_BLOCK, http=http)
    used = await _authorization_used(rpc_url, token, authorizer, nonce, http, hex(number))
    return judge_authorization(used, valid_before, timestamp)


def judge_authorization(used: bool | None, valid_before: int, now: float) -> ChainState:
    """What an authorization's on-chain state means for its call. Pure: the chain and the clock are inputs.

    `used` is `authorizationState(from, nonce)` (None: not known). An authorization is void from
    `validBefore` on (EIP-3009 requires `now < validBefore`), so "expired" means `now >= valid_before`. A
    nonce the wallet cancelled also reads as used: this client never cancels, so used means settled.

    Example:
        >>> judge_authorization(True, 1_000, now=5_000.0)
        'settled'
        >>> judge_authorization(False, 1_000, now=999.0)
        'still_valid'
        >>> judge_authorization(False, 1_000, now=1_000.0)
        'expired_unused'
        >>> judge_authorization(None, 1_000, now=5_000.0)
        'unknown'
    """
    if used is None:
        return "unknown"
    if used:
        return "settled"
    return "expired_unused" if now >= valid_before else "still_valid"
