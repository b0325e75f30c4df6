"""The paid routes' shared flow: validate, quote, verify, handle, settle (x402 "authorization" flow)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from prefect_stablestudio.simulator.dialect import (
    INVALID_JSON,
    agent_identity,
    bazaar_extension,
    payment_rejected,
    validation_failed,
)
from prefect_stablestudio.simulator.encoding import b64_json
from prefect_stablestudio.simulator.faults import Checkpoint, FaultRule
from prefect_stablestudio.simulator.ledger import SettlementRefused
from prefect_stablestudio.simulator.mpp import (
    MppRefused,
    challenge_header,
    credential_of,
    receipt_header,
    tempo_request,
    verify_charge,
)
from prefect_stablestudio.simulator.payments import (
    INSUFFICIENT_BALANCE,
    REPLAYED,
    MalformedPayment,
    PaymentRefused,
    decode_payment,
    requirement,
    verify_payment,
)
from prefect_stablestudio.simulator.responses import (
    DroppedConnection,
    json_response,
    malformed,
    payment_required,
)
from prefect_stablestudio.simulator.settings import BASE_NETWORK, BASE_USDC, USDC_EIP712
from prefect_stablestudio.simulator.state import SimulatorState

PAYMENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
PAYMENT_ID_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "required": {"type": "boolean"},
        "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"},
    },
    "required": ["required"],
}


@dataclass(frozen=True)
class PaidRoute:
    """What a paid route is: its names, how it checks a body and prices it, and what a payment buys.

    ``create`` runs after the payment verified and before settlement, with the body (defaults filled in), the
    body as sent, the payer and the fault that fired at the ``created`` checkpoint (or None); it returns the
    resource id and the 200 body. ``tag`` and ``input_schema`` go into the quote (bazaar extension);
    ``priced_by_body`` says whether the price depends on the body (else the route has one static price).
    """

    name: str
    counter: str
    description: str
    validate: Callable[[Any], tuple[dict[str, Any], list[dict[str, Any]]]]
    tier: Callable[[dict[str, Any]], str]
    price_key: str
    create: Callable[[dict[str, Any], Any, str, FaultRule | None], tuple[str, dict[str, Any]]]
    tag: str = "Generate"
    input_schema: dict[str, Any] | None = None
    priced_by_body: bool = True


def _fault_response(state: SimulatorState, route: str, rule: FaultRule) -> Response | None:
    """The answer a request-checkpoint fault gives instead of the real one (None: go on)."""
    state.ledger.count(state.ledger.faults, f"{route}:{rule.kind}")
    if rule.kind == "http_5xx":
        return json_response({"error": "internal_error", "message": "simulated server error"}, rule.status)
    if rule.kind == "rate_limited_429":
        return json_response(
            {"error": "rate_limited", "message": "simulated rate limit"},
            429,
            {"Retry-After": str(rule.retry_after)},
        )
    return None


def _paid_fault(state: SimulatorState, checkpoint: Checkpoint, route: str) -> FaultRule | None:
    """The fault a paid request meets at `checkpoint` ("verified", "created"), counted if one fires."""
    rule = state.faults.decide(checkpoint, route, paid=True)
    if rule is not None:
        state.ledger.count(state.ledger.faults, f"{route}:{rule.kind}")
    return rule


async def apply_request_fault(
    state: SimulatorState, route: str, *, paid: bool
) -> tuple[Response | None, bool]:
    """Decide the request-checkpoint fault: an early answer, and whether the body must come out malformed."""
    rule = state.faults.decide("request", route, paid=paid)
    if rule is None:
        return None, False
    early = _fault_response(state, route, rule)
    if rule.kind == "slow":
        await asyncio.sleep(rule.delay)
    return early, rule.kind == "malformed_json"


def _quote(
    state: SimulatorState, request: Request, route: PaidRoute, amount: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    # The router canonicalises payTo to lower case (routerConfigFromEnv).
    quoted = requirement(
        amount=amount,
        pay_to=state.settings.pay_to.lower(),
        network=BASE_NETWORK,
        asset=BASE_USDC,
        extra=USDC_EIP712,
        max_timeout_seconds=state.settings.max_timeout_seconds,
    )
    schema = route.input_schema or {"type": "object"}
    extensions: dict[str, Any] = {"bazaar": bazaar_extension("POST", schema)}
    if state.settings.payment_identifier:
        extensions["payment-identifier"] = {"info": {"required": False}, "schema": PAYMENT_ID_SCHEMA}
    url = f"{state.origin}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
    challenge = {
        "x402Version": 2,
        "resource": {
            "url": url,
            "method": "POST",
            "description": route.description,
            "mimeType": "application/json",
            "tags": [route.tag],
            "serviceName": state.settings.service_name,
        },
        "accepts": [quoted],
        "extensions": extensions,
    }
    return quoted, challenge


def challenge_headers(state: SimulatorState, request: Request, offer: MppOffer | None) -> dict[str, str]:
    """The headers every 402 of the router carries besides PAYMENT-REQUIRED: the MPP offer (if any) and the
    optional DID-auth challenge ``X-Agent-Identity``."""
    host = urlsplit(state.origin).hostname or ""
    headers = {"X-Agent-Identity": agent_identity(host, request.url.path, time.time())}
    return {**(offer.headers if offer is not None else {}), **headers}


@dataclass(frozen=True)
class MppOffer:
    """The MPP Tempo charge offered beside the x402 quote: its request, realm and WWW-Authenticate header."""

    request: dict[str, Any]
    realm: str
    headers: dict[str, str]


def mpp_offer(state: SimulatorState, request: Request, amount: int) -> MppOffer | None:
    """The MPP challenge for ``amount`` (None when the ``mpp`` setting is off). The realm is our host."""
    s = state.settings
    if not s.mpp:
        return None
    realm = state.origin.split("://", 1)[-1]
    offer = tempo_request(amount, s.mpp_currency, s.mpp_recipient or s.pay_to, s.mpp_chain_id)
    header = challenge_header(s.mpp_secret, realm, offer, time.time() + s.max_timeout_seconds)
    return MppOffer(request=offer, realm=realm, headers={"WWW-Authenticate": header})


async def _handle_mpp(
    state: SimulatorState,
    request: Request,
    route: PaidRoute,
    bodies: tuple[dict[str, Any], Any],
    challenge: dict[str, Any],
    offer: MppOffer,
) -> Response:
    """Serve a request paid with an MPP Tempo charge: verify, create, settle, answer a receipt."""
    full, body = bodies
    now = time.time()

    def refuse(reason: str, message: str, problem: str = "verification-failed") -> Response:
        state.ledger.count(state.ledger.refusals, reason)
        problem_body = {
            "type": f"https://paymentauth.org/problems/{problem}",
            "title": problem,
            "status": 402,
            "detail": message,
            "error": reason,
            "message": message,
        }
        return payment_required({**challenge, "error": reason}, problem_body, offer.headers)

    try:
        charge = verify_charge(
            request.headers["authorization"],
            secret=state.settings.mpp_secret,
            realm=offer.realm,
            quote=offer.request,
            now=now,
        )
    except MppRefused as exc:
        return refuse(exc.reason, exc.message, exc.problem)
    if state.ledger.nonce_used(charge.payer, charge.nonce, charge.network):
        return refuse("tempo_transaction_nonce_used", "this transaction was already settled")
    if state.ledger.balance(charge.payer, charge.network) < charge.value:
        return refuse("insufficient_funds", "the payer's Tempo balance is too low", "payment-insufficient")

    settle_fault = _paid_fault(state, "verified", route.name)
    if settle_fault is not None and settle_fault.kind == "reset_before_settlement":
        return DroppedConnection()
    created_fault = _paid_fault(state, "created", route.name)
    resource_id, result = route.create(full, body, charge.payer, created_fault)
    if settle_fault is not None and settle_fault.kind == "settlement_failure":
        return refuse("settlement_failed", "broadcast failed after the request was handled")
    try:
        payment = state.ledger.settle(
            charge.payer,
            charge.value,
            charge.nonce,
            route=route.name,
            resource_id=resource_id,
            network=charge.network,
        )
    except SettlementRefused as exc:
        return refuse(exc.reason, "settlement refused")
    headers = {"Payment-Receipt": receipt_header(payment.transaction, now), "Cache-Control": "private"}
    response = json_response(result, 200, headers)
    if settle_fault is not None and settle_fault.kind == "reset_after_settlement":
        return DroppedConnection()
    return response


def _refused(
    state: SimulatorState, challenge: dict[str, Any], headers: dict[str, str], reason: str, message: str
) -> Response:
    """The router's refusal: the code in ``reason``, prose in ``error``, a fresh quote (without ``error``)."""
    state.ledger.count(state.ledger.refusals, reason)
    return payment_required(challenge, payment_rejected(reason, message), headers)


def _payment_id(payload: dict[str, Any]) -> str | None:
    ext = payload.get("extensions")
    info = ext.get("payment-identifier", {}).get("info") if isinstance(ext, dict) else None
    return info.get("id") if isinstance(info, dict) and isinstance(info.get("id"), str) else None


async def handle_paid(state: SimulatorState, request: Request, route: PaidRoute) -> Response:
    """Serve one request to a paid route, from the unpaid quote to the settled answer."""
    state.ledger.count(state.ledger.requests, route.counter)
    header = request.headers.get("payment-signature")
    paid = header is not None or credential_of(request.headers.get("authorization")) is not None
    early, broken = await apply_request_fault(state, route.name, paid=paid)
    if early is not None:
        return early
    response = await _handle_paid(state, request, route, header)
    return malformed(response) if broken and not isinstance(response, DroppedConnection) else response


def _invalid_body(route: PaidRoute, raw: bytes) -> tuple[Any, dict[str, Any], Response | None]:
    """The body as sent, with defaults filled in, and the router's 400 for it (None when it is valid)."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, {}, json_response(INVALID_JSON, 400)
    full, issues = route.validate(body)
    return body, full, json_response(validation_failed(issues), 400) if issues else None


async def _handle_paid(
    state: SimulatorState, request: Request, route: PaidRoute, header: str | None
) -> Response:
    raw = await request.body()
    body, full, invalid = _invalid_body(route, raw)
    settings = state.settings
    if invalid is not None and settings.validation_order == "before_quote":
        return invalid
    if invalid is None:
        amount = settings.price(route.price_key, route.tier(full))
    elif route.priced_by_body:
        amount = settings.max_price(route.price_key)  # the router's price function failed: maxPrice
    else:
        amount = settings.price(route.price_key)  # a static price is quoted without reading the body
    quoted, challenge = _quote(state, request, route, amount)
    offer = mpp_offer(state, request, amount)
    headers = challenge_headers(state, request, offer)
    mpp_credential = credential_of(request.headers.get("authorization"))
    paid_with_mpp = header is None and offer is not None and mpp_credential is not None
    if invalid is not None and (header is not None or paid_with_mpp):
        # A signed request with a body that fails the schema: 400 before verify and settle, nothing moves.
        return invalid
    if paid_with_mpp and offer is not None:
        return await _handle_mpp(state, request, route, (full, body), challenge, offer)
    if header is None:
        return payment_required(challenge, None, headers)
    try:
        payload = decode_payment(header)
    except MalformedPayment as exc:
        state.ledger.count(state.ledger.refusals, "invalid_payload")
        return json_response({"error": "invalid_payload", "message": str(exc)}, 400)

    payment_id = _payment_id(payload) if state.settings.payment_identifier else None
    fingerprint = hashlib.sha256(route.name.encode() + raw + header.encode()).hexdigest()
    if payment_id is not None:
        if not PAYMENT_ID_PATTERN.match(payment_id):
            return json_response({"error": "invalid_payload", "message": "invalid payment identifier"}, 400)
        cached = state.cached_payment(payment_id)
        if cached is not None:
            if cached[0] != fingerprint:
                state.ledger.count(state.ledger.events, "payment_identifier_conflicts")
                return json_response(
                    {
                        "error": "payment_identifier_conflict",
                        "message": "this id was used with another payload",
                    },
                    409,
                )
            state.ledger.count(state.ledger.events, "payment_identifier_cache_hits")
            return cached[1]

    try:
        auth = verify_payment(payload, quoted, now=time.time())
    except PaymentRefused as exc:
        return _refused(state, challenge, headers, exc.reason, exc.message)
    if state.ledger.nonce_used(auth.payer, auth.nonce):
        # The facilitator's simulation of transferWithAuthorization reverts; its text is passed on verbatim.
        return _refused(
            state,
            challenge,
            headers,
            REPLAYED,
            'The contract function "transferWithAuthorization" reverted with the following reason:\n'
            "FiatTokenV2: authorization is used or canceled",
        )
    if state.ledger.balance(auth.payer) < auth.value:
        return _refused(
            state, challenge, headers, INSUFFICIENT_BALANCE, "ERC20: transfer amount exceeds balance"
        )

    settle_fault = _paid_fault(state, "verified", route.name)
    if settle_fault is not None and settle_fault.kind == "reset_before_settlement":
        return DroppedConnection()

    created_fault = _paid_fault(state, "created", route.name)
    resource_id, result = route.create(full, body, auth.payer, created_fault)

    if settle_fault is not None and settle_fault.kind == "settlement_failure":
        settlement = {
            "success": False,
            "transaction": "",
            "network": BASE_NETWORK,
            "payer": auth.payer,
            "errorReason": "settlement_failed",
        }
        state.ledger.count(state.ledger.refusals, "settlement_failed")
        return payment_required(
            challenge,
            payment_rejected("settlement_failed", "settlement failed after the request was handled"),
            {**headers, "PAYMENT-RESPONSE": b64_json(settlement)},
        )
    try:
        payment = state.ledger.settle(
            auth.payer, auth.value, auth.nonce, route=route.name, resource_id=resource_id
        )
    except SettlementRefused as exc:
        return _refused(state, challenge, headers, exc.reason, "settlement refused")
    settlement = {
        "success": True,
        "transaction": payment.transaction,
        "network": BASE_NETWORK,
        "payer": auth.payer,
        "amount": str(auth.value),
    }
    response = json_response(
        result, 200, {"PAYMENT-RESPONSE": b64_json(settlement), "Cache-Control": "private"}
    )
    if payment_id is not None:
        state.cache_payment(payment_id, fingerprint, response)
    if settle_fault is not None and settle_fault.kind == "reset_after_settlement":
        return DroppedConnection()
    return response
