"""MPP Tempo charge as the second payment method: choose between x402 and MPP, and sign the charge with pympp.

The order that protects the wallet is the same as for x402: `choose_quote` (the policy check; raises before
anything is signed) -> hooks -> `sign_charge`. pympp signs a Tempo type-0x76 transaction (a TIP-20 transfer
with an expiring nonce) after asking a Tempo RPC for the chain id, gas price and a gas estimate; that RPC is
`STABLESTUDIO_TEMPO_RPC_URL` or the client's `tempo_rpc_url`, else Tempo mainnet's public one.

The choice (`WalletPolicy.payment_method`): "x402" pays only x402 (exactly as before), "mpp" only MPP, "auto"
the offer the policy allows with the lower amount, x402 first on ties.

Example:
    >>> from prefect_stablestudio.client.mpp import tempo_rpc_url
    >>> tempo_rpc_url("http://127.0.0.1:9/_sim/tempo-rpc")
    'http://127.0.0.1:9/_sim/tempo-rpc'
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import httpx
import rlp  # type: ignore[import-untyped]
from eth_account.signers.local import LocalAccount

from prefect_stablestudio.client.errors import PolicyRefused, ProtocolError
from prefect_stablestudio.client.mpp_challenge import MppOffer, choose_offer, parse_offers
from prefect_stablestudio.client.payment import Payment
from prefect_stablestudio.client.policy import WalletPolicy
from prefect_stablestudio.client.x402 import (
    PaymentRequired,
    Quote,
    Requirement,
    choose_requirement,
    decode_payment_required,
    payment_required_from_json,
)

__all__ = [
    "DEFAULT_TEMPO_RPC_URL",
    "check_rpc",
    "choose_quote",
    "sign_charge",
    "tempo_rpc_url",
    "unsigned_payment",
]

DEFAULT_TEMPO_RPC_URL = "https://rpc.tempo.xyz"
_RPC_TIMEOUT = 10.0


def tempo_rpc_url(explicit: str | None = None) -> str:
    """The Tempo RPC pympp asks: `explicit`, else `STABLESTUDIO_TEMPO_RPC_URL`, else mainnet's."""
    return explicit or os.environ.get("STABLESTUDIO_TEMPO_RPC_URL") or DEFAULT_TEMPO_RPC_URL


def _x402_challenge(response: httpx.Response) -> PaymentRequired:
    header = response.headers.get("payment-required")
    if header:
        return decode_payment_required(header)
    try:
        data = response.json()
    except ValueError:
        data = None
    return payment_required_from_json(data)


def _mpp_quote(
    offer: MppOffer, payment_required: PaymentRequired | None, url: str, body_sha256: str, now: float
) -> Quote:
    # `requirement` mirrors the charge: hooks and the intent store read amount, recipient, asset, network.
    expires = offer.expires_at() or now
    requirement = Requirement(
        scheme="tempo-charge",
        network=offer.network,
        amount=offer.amount,
        asset=offer.currency,
        pay_to=offer.recipient,
        max_timeout_seconds=max(0, int(expires - now)),
        extra={},
        raw=dict(offer.request),
    )
    challenge = payment_required or PaymentRequired.model_validate(
        {"x402Version": 2, "resource": {"url": url}, "accepts": []}
    )
    return Quote(
        requirement=requirement,
        payment_required=challenge,
        resource_url=url,
        body_sha256=body_sha256,
        mpp=offer,
    )


def choose_quote(
    response: httpx.Response, policy: WalletPolicy, url: str, body_sha256: str, *, now: float | None = None
) -> Quote:
    """The quote to pay for a 402, by `policy.payment_method`; every offer is checked before signing.

    Raises:
        PolicyRefused: no offer of an allowed method passes the policy (the first refusal's reason).
        ProtocolError: x402 only, and `PAYMENT-REQUIRED` is missing or malformed.
    """
    stamp = time.time() if now is None else now
    method = policy.payment_method
    if method == "x402":
        payment_required = _x402_challenge(response)
        return Quote(
            requirement=choose_requirement(payment_required, policy),
            payment_required=payment_required,
            resource_url=url,
            body_sha256=body_sha256,
        )
    candidates: list[Quote] = []
    refusals: list[PolicyRefused] = []
    x402: PaymentRequired | None = None
    if method == "auto":
        try:
            x402 = _x402_challenge(response)
            candidates.append(
                Quote(
                    requirement=choose_requirement(x402, policy),
                    payment_required=x402,
                    resource_url=url,
                    body_sha256=body_sha256,
                )
            )
        except PolicyRefused as exc:
            refusals.append(exc)
        except ProtocolError:
            pass  # no x402 offer: MPP may still do
    offers = parse_offers(response.headers.get_list("www-authenticate"))
    try:
        offer = choose_offer(offers, policy, url, stamp)
        candidates.append(_mpp_quote(offer, x402, url, body_sha256, stamp))
    except PolicyRefused as exc:
        refusals.append(exc)
    if candidates:
        return min(candidates, key=lambda q: q.amount)  # min keeps the first of equals: x402 on ties
    raise refusals[0]


async def check_rpc(offer: MppOffer, rpc_url: str | None = None) -> None:
    """Ask the Tempo RPC its chain id before any hook runs, so an unreachable or wrong RPC refuses the
    payment before budget is reserved (pympp would otherwise fail halfway through signing).

    Raises:
        PolicyRefused: the RPC does not answer (`tempo_rpc_unavailable`) or serves another chain
            (`tempo_rpc_chain_mismatch`).
    """
    url = tempo_rpc_url(rpc_url)
    call = {"jsonrpc": "2.0", "method": "eth_chainId", "params": [], "id": 1}
    try:
        async with httpx.AsyncClient(timeout=_RPC_TIMEOUT) as http:
            reply = await http.post(url, json=call)
        chain = int(reply.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise PolicyRefused(
            f"Tempo RPC {url} gave no chain id ({type(exc).__name__})", reason="tempo_rpc_unavailable"
        ) from None
    if chain != offer.chain_id:
        raise PolicyRefused(
            f"Tempo RPC {url} serves chain {chain}, the challenge asks for {offer.chain_id}",
            reason="tempo_rpc_chain_mismatch",
        )


def unsigned_payment(quote: Quote, now: float | None = None) -> Payment:
    """A record of an MPP payment that was never signed (signing failed after the hooks reserved budget):
    report it to `after_outcome` as rejected so the reservation is released. Its header is empty."""
    offer = quote.mpp
    if offer is None:
        raise ValueError("not an MPP quote")
    stamp = time.time() if now is None else now
    return Payment(
        header="",
        nonce=offer.id,
        amount=offer.amount,
        asset=offer.currency,
        network=offer.network,
        pay_to=offer.recipient,
        payer="",
        resource_url=quote.resource_url,
        body_sha256=quote.body_sha256,
        valid_before=0,
        signed_at=datetime.fromtimestamp(stamp, UTC),
        method="mpp",
    )


def _valid_before(raw_tx: str) -> int:
    """validBefore of a signed 0x76 transaction (field 8 of its RLP list)."""
    try:
        fields = rlp.decode(bytes.fromhex(raw_tx.removeprefix("0x"))[1:])
        return int.from_bytes(fields[8], "big")
    except (ValueError, IndexError, TypeError, rlp.DecodingError):
        return 0


async def sign_charge(
    account: LocalAccount, quote: Quote, *, rpc_url: str | None = None, now: float | None = None
) -> Payment:
    """Sign the quote's MPP Tempo charge with pympp (the same key as x402) and return it as a `Payment`.

    Call only after `choose_quote` accepted the offer and the hooks agreed. pympp re-checks the chain against
    the RPC's chain id. The payment's nonce is the transaction hash: persist the payment before sending it and
    re-send that exact credential after an ambiguous failure; never sign anew for the same call.

    Raises:
        ValueError: the quote is not an MPP quote, or pympp refused the challenge.
    """
    from mpp import Challenge
    from mpp.methods.tempo import TempoAccount
    from mpp.methods.tempo.client import TempoMethod

    offer = quote.mpp
    if offer is None:
        raise ValueError("not an MPP quote")
    stamp = time.time() if now is None else now
    method = TempoMethod(
        account=TempoAccount.from_key("0x" + bytes(account.key).hex()),
        rpc_url=tempo_rpc_url(rpc_url),
        chain_id=None,  # trust the RPC's chain id, checked by pympp against the challenge's
        currency=offer.currency,
    )
    credential = await method.create_credential(Challenge.from_www_authenticate(offer.header))
    raw_tx = str(credential.payload.get("signature", ""))
    tx_hash = method.transaction_hash(credential)
    return Payment(
        header=credential.to_authorization(),
        nonce=tx_hash or offer.id,  # a sponsored transaction's hash is known only after co-signing
        amount=offer.amount,
        asset=offer.currency,
        network=offer.network,
        pay_to=offer.recipient,
        payer=account.address,
        resource_url=quote.resource_url,
        body_sha256=quote.body_sha256,
        valid_before=_valid_before(raw_tx),
        signed_at=datetime.fromtimestamp(stamp, UTC),
        method="mpp",
    )
