"""The paid POST: quote, check, hook, sign, send; re-send the same header on ambiguity; resume a lost reply.

One logical call gets at most one signature. Every path past signing ends in `hooks.after_outcome`.

With a Base RPC URL, an ambiguous outcome is settled by the token itself (`chain.authorization_verdict`):
a re-sent payment whose authorization is already used is not sent again (its job is looked for); one that is
unused after its `validBefore` is recorded as rejected and the call signs anew (the only case where a
re-sent call signs: the old authorization can never move money); one still valid is re-sent as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from prefect_stablestudio.client._http import error_code, excerpt, raise_for_status, retry_after_seconds
from prefect_stablestudio.client.chain import ChainState, authorization_verdict
from prefect_stablestudio.client.encoding import canonical_json, decode_b64_json
from prefect_stablestudio.client.errors import (
    InvalidRequest,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PaymentUnrecovered,
    PolicyRefused,
    ProtocolError,
    RateLimited,
    RpcError,
    StableStudioError,
    UpstreamError,
)
from prefect_stablestudio.client.mpp import check_rpc, choose_quote, sign_charge, unsigned_payment
from prefect_stablestudio.client.mpp_challenge import decode_receipt
from prefect_stablestudio.client.payment import Payment, PaymentHooks, PaymentOutcome, Settlement
from prefect_stablestudio.client.policy import BASE_MAINNET, WalletPolicy
from prefect_stablestudio.client.prices import published_max_price
from prefect_stablestudio.client.session import Session
from prefect_stablestudio.client.x402 import Quote, decode_settlement, payment_identifier_for, sign_payment

__all__ = [
    "REPLAYED_AUTHORIZATION_CODES",
    "FindExisting",
    "PaidCall",
    "PaidResponse",
    "invalid_request_from",
    "is_replay_code",
]

# Looks for what a payment bought when its reply was lost; returns the reply-shaped JSON, or None.
FindExisting = Callable[[Payment, Any], Awaitable[dict[str, Any] | None]]
_AMBIGUOUS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_FIND_ATTEMPTS = 3
EXPIRED_UNUSED = "authorization_expired_unused"
"""The reason recorded for an authorization the chain shows unused after its `validBefore`: no money moved."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaidResponse:
    """A successful paid call: the reply JSON and what paid for it."""

    data: Any
    payment: Payment | None
    settlement: Settlement | None
    resumed: bool = False


class PaidCall:
    """The paid call: POSTs to paid routes for one session, under one policy and one set of hooks (the
    hooks' order: `prefect_stablestudio.blocks.payment_guard`)."""

    def __init__(
        self,
        session: Session,
        policy: WalletPolicy,
        hooks: PaymentHooks,
        *,
        resend_attempts: int = 2,
        resend_backoff: float = 0.5,
        tempo_rpc_url: str | None = None,
        base_rpc_url: str | None = None,
    ) -> None:
        self.tempo_rpc_url = tempo_rpc_url
        self.base_rpc_url = base_rpc_url
        self.session = session
        self.policy = policy
        self.hooks = hooks
        self.resend_attempts = resend_attempts
        self.resend_backoff = resend_backoff

    async def post(
        self,
        kind: str,
        path: str,
        body: Any,
        *,
        payment: Payment | None = None,
        idempotency_key: str | None = None,
        find_existing: FindExisting | None = None,
    ) -> PaidResponse:
        """POST `body` to a paid route and pay for it (or re-send `payment`, never signing again).

        Raises:
            InvalidRequest: the server refused the body (before or after signing: no money moved), or
                `payment` is for another call.
            PolicyRefused: the policy or `before_signing` refused (nothing signed); among the reasons,
                `implausible_price` for a quote far above the route's published price.
            PaymentRejected: the server refused the payment (no money moved).
            PaymentOutcomeUnknown: money may have moved; carries the payment.
            PaymentUnrecovered: the chain shows the money moved, but what it bought was not found.
        """
        url = self.session.url(path)
        content = canonical_json(body)
        body_sha256 = hashlib.sha256(content).hexdigest()
        if payment is not None:
            self._check_reusable(payment, url, body_sha256)
            chain = await self._chain_state(payment)
            if chain == "settled":
                # The money moved: sending it again cannot buy more. Find what it bought.
                why = "authorization already used on chain"
                return await self._resume(payment, body, find_existing, why, chain=chain)
            if chain != "expired_unused":
                return await self._send_signed(
                    kind, url, content, body, payment, resend=True, find=find_existing, chain=chain
                )
            # Void for ever: it moved no money and never will. Say so, then pay for the call anew.
            outcome = PaymentOutcome(status="rejected", reason=EXPIRED_UNUSED, chain_state=chain)
            await self.hooks.after_outcome(payment, outcome)
            logger.warning(
                "payment %s expired unused (read on chain): signing a new one for the same call",
                payment.nonce,
            )

        response = await self._unpaid(kind, url, content)
        if response.is_success:
            return PaidResponse(data=_json(response), payment=None, settlement=None)
        quote = choose_quote(response, self.policy, url, body_sha256)
        refusal = self.policy.check_plausible_price(quote.amount, published_max_price(path))
        if refusal is not None:
            raise PolicyRefused(f"refused to sign: {refusal[1]}", reason=refusal[0])
        if quote.mpp is not None:
            await check_rpc(quote.mpp, self.tempo_rpc_url)
        await self.hooks.before_signing(quote)
        if quote.mpp is not None:
            try:
                signed = await sign_charge(
                    self.session.signer.local_account(), quote, rpc_url=self.tempo_rpc_url
                )
            except Exception as exc:
                # Nothing was signed (pympp only returns the transaction): release what the hooks reserved.
                outcome = PaymentOutcome(status="rejected", reason="signing_failed")
                await self.hooks.after_outcome(unsigned_payment(quote), outcome)
                raise PolicyRefused(
                    f"could not sign the Tempo charge ({type(exc).__name__})", reason="signing_failed"
                ) from None
        else:
            signed = sign_payment(
                self.session.signer, quote, payment_identifier=payment_identifier_for(idempotency_key, url)
            )
        self.session.stats.payments_signed += 1
        await self.hooks.after_signing(signed)
        return await self._send_signed(kind, url, content, body, signed, resend=False, find=find_existing)

    async def quote(self, kind: str, path: str, body: Any) -> Quote | None:
        """What `post` would be asked to pay for `body`, and nothing more: the unpaid POST and the 402's
        offers, checked against the policy by the same `choose_quote`. No hook runs, nothing is signed.

        Returns None when the route answered without asking for payment (it is free).

        Raises:
            InvalidRequest: the server refused the body (a 400 comes before any quote).
            PolicyRefused: no offer passes the policy (the payment would be refused too).
        """
        url = self.session.url(path)
        content = canonical_json(body)
        response = await self._unpaid(kind, url, content)
        if response.is_success:
            return None
        return choose_quote(response, self.policy, url, hashlib.sha256(content).hexdigest())

    def _check_reusable(self, payment: Payment, url: str, body_sha256: str) -> None:
        if payment.body_sha256 != body_sha256:
            raise InvalidRequest("this payment was signed for another request body", field="payment")
        if payment.resource_url != url:
            raise InvalidRequest(
                f"this payment was signed for {payment.resource_url}, not {url}", field="payment"
            )
        if payment.payer.lower() != self.session.signer.address.lower():
            raise InvalidRequest("this payment was signed by another wallet", field="payment")

    async def _unpaid(self, kind: str, url: str, content: bytes) -> httpx.Response:
        response = await self.session.send(kind, "POST", url, content=content)
        if response.status_code == 400:
            raise invalid_request_from(response, signed=False)
        if response.status_code != 402:
            raise_for_status(response, f"POST {url}")
        return response

    async def _send_signed(
        self,
        kind: str,
        url: str,
        content: bytes,
        body: Any,
        payment: Payment,
        *,
        resend: bool,
        find: FindExisting | None,
        chain: ChainState | None = None,
    ) -> PaidResponse:
        headers = payment.request_headers
        last_problem = "no reply"
        for attempt in range(1 + self.resend_attempts):
            if attempt:
                await asyncio.sleep(self.resend_backoff * attempt)
            is_resend = resend or attempt > 0
            try:
                response = await self.session.send(kind, "POST", url, content=content, headers=headers)
            except _AMBIGUOUS as exc:
                last_problem = type(exc).__name__
                continue
            except ProtocolError as exc:
                # A redirect after the signed header reached the server: it may have taken the money.
                await self._unknown(payment, str(exc))
            if response.is_success:
                return await self._settled(payment, response, body, find, chain)
            if response.status_code >= 500 or response.status_code == 429:
                last_problem = f"HTTP {response.status_code}"
                delay = retry_after_seconds(response)
                if delay is not None and response.status_code == 429:
                    await asyncio.sleep(min(delay, 10.0))
                continue
            if response.status_code == 400 and not is_resend and _has_issues(response):
                # A schema refusal of the first delivery: the router and the simulator validate before
                # verify and settle, so nothing moved. (On a re-send an earlier delivery may have settled.)
                await self.hooks.after_outcome(
                    payment, PaymentOutcome(status="rejected", reason="invalid_request", chain_state=chain)
                )
                raise invalid_request_from(response, signed=True)
            reason = _refusal_reason(response)
            if is_resend or is_replay_code(reason):
                # The money may have moved on an earlier send whose reply we lost: find what it bought.
                why = f"re-sent payment answered {reason!r}"
                return await self._resume(payment, body, find, why, chain=chain)
            await self.hooks.after_outcome(
                payment, PaymentOutcome(status="rejected", reason=reason, chain_state=chain)
            )
            raise PaymentRejected(f"payment refused: {reason}", reason=reason, payment=payment)
        why = f"no answer after {1 + self.resend_attempts} sends ({last_problem})"
        if self._asks_chain(payment):
            chain = await self._chain_state(payment)
            if chain == "settled":
                return await self._resume(payment, body, find, why, chain=chain)
            await self._unknown(payment, why, chain=chain, read=False)
        await self._unknown(payment, why, chain=chain)

    async def _settled(
        self,
        payment: Payment,
        response: httpx.Response,
        body: Any,
        find: FindExisting | None,
        chain: ChainState | None = None,
    ) -> PaidResponse:
        settlement: Settlement | None = None
        header = response.headers.get("payment-receipt" if payment.method == "mpp" else "payment-response")
        if header:
            try:
                settlement = (
                    decode_receipt(header, payment) if payment.method == "mpp" else decode_settlement(header)
                )
            except ProtocolError:
                settlement = None  # money moved; a bad receipt must not turn success into failure
        try:
            data = response.json()
        except ValueError:
            # A 2xx means the money moved: look for what it bought rather than leave the outcome unknown.
            return await self._resume(payment, body, find, "paid reply is not JSON", settlement, chain=chain)
        await self.hooks.after_outcome(
            payment, PaymentOutcome(status="settled", settlement=settlement, response=data, chain_state=chain)
        )
        return PaidResponse(data=data, payment=payment, settlement=settlement)

    async def _resume(
        self,
        payment: Payment,
        body: Any,
        find: FindExisting | None,
        reason: str,
        settlement: Settlement | None = None,
        *,
        chain: ChainState | None = None,
    ) -> PaidResponse:
        found = await self._find(payment, body, find) if find is not None else None
        if found is None:
            await self._unknown(payment, f"{reason}; no unique result found", chain=chain)
        outcome = PaymentOutcome(
            status="settled", reason=reason, settlement=settlement, response=found, chain_state=chain
        )
        await self.hooks.after_outcome(payment, outcome)
        return PaidResponse(data=found, payment=payment, settlement=settlement, resumed=True)

    async def _find(self, payment: Payment, body: Any, find: FindExisting) -> dict[str, Any] | None:
        """What `payment` bought, or None. The lookup is free: a busy server must not leave a settled
        payment "unknown", so transient failures are retried a few times."""
        for attempt in range(_FIND_ATTEMPTS):
            delay: float | None = None
            try:
                return await find(payment, body)
            except RateLimited as exc:
                delay = exc.retry_after
            except UpstreamError as exc:
                if 0 < exc.status < 500:
                    return None
            except httpx.TransportError:
                pass
            except (StableStudioError, httpx.HTTPError):
                return None
            await asyncio.sleep(
                min(delay, 10.0) if delay is not None else self.resend_backoff * (attempt + 1)
            )
        return None

    def _asks_chain(self, payment: Payment) -> bool:
        """Whether the chain can settle `payment`'s outcome: an x402 payment on Base, with a Base RPC URL."""
        return self.base_rpc_url is not None and payment.method == "x402" and payment.network == BASE_MAINNET

    async def _chain_state(self, payment: Payment) -> ChainState:
        """What the token says about `payment`'s authorization ("unknown" when it cannot be asked)."""
        if not self._asks_chain(payment) or self.base_rpc_url is None:
            return "unknown"
        try:
            return await authorization_verdict(
                self.base_rpc_url, payment.asset, payment.payer, payment.nonce, payment.valid_before
            )
        except (RpcError, ValueError) as exc:
            logger.warning("payment %s: the chain was not read (%s)", payment.nonce, exc)
            return "unknown"

    async def _unknown(
        self, payment: Payment, why: str, *, chain: ChainState | None = None, read: bool = True
    ) -> NoReturn:
        """The end of every ambiguous path without a result. With a Base RPC, the token decides what it was:
        used (settled, unrecovered), unused after `validBefore` (rejected: no money moved) or still open.
        `chain` is a state read earlier; it is read again (unless `read` is False) when not "settled"."""
        if read and chain != "settled" and self._asks_chain(payment):
            chain = await self._chain_state(payment)  # read now: a still-valid one may have settled since
        if chain == "settled":
            why = f"{why}; the chain shows the authorization used: the money moved"
            await self.hooks.after_outcome(
                payment, PaymentOutcome(status="settled", reason=why, chain_state=chain)
            )
            raise PaymentUnrecovered(
                f"payment {payment.nonce} to {payment.resource_url} settled, but what it bought was not "
                f"found ({why}); never pay again: re-send it with payment= to look again",
                payment=payment,
            )
        if chain == "expired_unused":
            outcome = PaymentOutcome(status="rejected", reason=EXPIRED_UNUSED, chain_state=chain)
            await self.hooks.after_outcome(payment, outcome)
            raise PaymentRejected(
                f"payment {payment.nonce} expired unused (read on chain; {why}): no money moved",
                reason=EXPIRED_UNUSED,
                payment=payment,
            )
        await self.hooks.after_outcome(
            payment, PaymentOutcome(status="unknown", reason=why, chain_state=chain)
        )
        raise PaymentOutcomeUnknown(
            f"payment {payment.nonce} to {payment.resource_url}: outcome unknown ({why}); "
            "re-send it with payment= or reconcile by its nonce",
            payment=payment,
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"reply is not JSON: {excerpt(response, 100)}") from None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


REPLAYED_AUTHORIZATION_CODES = frozenset(
    {
        "invalid_exact_evm_nonce_already_used",  # the official @x402 facilitator (and @agentcash/router)
        "invalid_exact_evm_payload_authorization_nonce_used",  # the simulator's older spelling
    }
)


def is_replay_code(reason: str) -> bool:
    """True when a refusal says this authorization was already used: the money may have moved before.

    Example:
        >>> is_replay_code("invalid_exact_evm_nonce_already_used")
        True
    """
    return reason in REPLAYED_AUTHORIZATION_CODES or reason.endswith(("nonce_used", "nonce_already_used"))


def invalid_request_from(response: httpx.Response, *, signed: bool) -> InvalidRequest:
    """The server's 400 as `InvalidRequest`, with its issues (zod's `{path, message, code}` shape).

    Reads the simulator's `{"error": "validation_error", "issues": [...]}` and @agentcash/router's
    `{"success": false, "error": "Validation failed", "issues": [...]}` alike.
    """
    data = _json_or_none(response)
    raw = data.get("issues") if isinstance(data, dict) else None
    issues = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
    described = []
    for issue in issues[:5]:
        path = issue.get("path")
        where = ".".join(str(p) for p in path) if isinstance(path, list) and path else "body"
        described.append(f"{where}: {str(issue.get('message', issue.get('code', 'invalid')))[:200]}")
    first_path = issues[0].get("path") if issues else None
    field = ".".join(str(p) for p in first_path) if isinstance(first_path, list) and first_path else None
    detail = "; ".join(described) or excerpt(response, 200)
    moved = "the signed payment was not settled, no money moved" if signed else "nothing was paid"
    return InvalidRequest(f"server refused the request body ({moved}): {detail}", field=field, issues=issues)


def _has_issues(response: httpx.Response) -> bool:
    """True for a validation refusal (a body with an `issues` list), not an undecodable payment header."""
    data = _json_or_none(response)
    return isinstance(data, dict) and isinstance(data.get("issues"), list)


def _refusal_reason(response: httpx.Response) -> str:
    """Why the server refused a signed payment: body code, then PAYMENT-RESPONSE, then PAYMENT-REQUIRED."""
    code = error_code(response)
    if code:
        return code
    problem = _json_or_none(response)
    if isinstance(problem, dict) and isinstance(problem.get("type"), str):
        return str(problem["type"]).rstrip("/").rsplit("/", 1)[-1]  # an MPP problem-details refusal
    for name, key in (("payment-response", "errorReason"), ("payment-required", "error")):
        header = response.headers.get(name)
        if header:
            try:
                decoded = decode_b64_json(header)
            except ProtocolError:
                continue
            if isinstance(decoded, dict) and isinstance(decoded.get(key), str):
                return str(decoded[key])
    return f"http_{response.status_code}"
