"""The client against @agentcash/router's dialect on a paid route (docs/architecture.md, section 1.1), served
on 127.0.0.1 by the purpose-built FakeStudio."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from prefect_stablestudio.client import EditRequest, PolicyRefused, StableStudioClient, WalletPolicy
from prefect_stablestudio.client.encoding import encode_b64_json
from tests.client.fake_studio import FakeStudio
from tests.client.helpers import PAY_TO, payment_required, requirement


def bazaar_schema() -> dict[str, Any]:
    """A route input schema the size of the router's (its PAYMENT-REQUIRED header is about 2.6 KB)."""
    props = {f"field_{i}": {"type": "string", "description": "x" * 40} for i in range(40)}
    return {"info": {"input": {"type": "http", "method": "POST"}}, "schema": {"properties": props}}


def router_quote(fake: FakeStudio) -> Any:
    """A paid 402 as the router writes it: empty body, no `error`, lower-case payTo, a bazaar extension,
    X-Agent-Identity and a zero-amount MPP challenge the client does not take."""

    def quote(request: Request, error: str = "") -> Response:
        pr = payment_required(
            str(request.url), copy.deepcopy(fake.accepts), extensions={"bazaar": bazaar_schema()}
        )
        del pr["error"]
        pr["resource"].update(method="POST", tags=["Generate"], serviceName="StableStudio")
        identity = {"v": 1, "challenge": {"domain": "127.0.0.1", "nonce": "ab" * 32}}
        return Response(
            b"",
            status_code=402,
            media_type="application/json",
            headers={
                "PAYMENT-REQUIRED": encode_b64_json(pr),
                "X-Agent-Identity": base64.urlsafe_b64encode(json.dumps(identity).encode()).decode(),
                "X-Request-ID": "0b7d4c1e-0000-4000-8000-000000000000",
                "Cache-Control": "no-store",
            },
        )

    return quote


async def test_a_router_quote_is_paid_once_and_its_extensions_are_echoed(serve_app, key: str) -> None:
    fake = FakeStudio(accepts=[requirement(payTo=PAY_TO.lower(), amount="45000")])
    fake.quote = router_quote(fake)  # type: ignore[method-assign]
    base = serve_app(fake.app())
    # The allow-list holds the checksummed address: the comparison ignores case, the policy is unchanged.
    policy = WalletPolicy(allowed_pay_to=frozenset({PAY_TO}), max_amount_per_call=100_000)
    async with StableStudioClient(key, base_url=base, policy=policy) as c:
        job = await c.submit_edit(EditRequest(prompt="snow", images=["https://b.example/x.png"]))
    assert job.payment is not None and job.payment.amount == 45_000
    assert job.payment.pay_to == PAY_TO.lower()
    signed = [s.payment for s in fake.seen if s.payment]
    assert len(signed) == 1
    assert signed[0]["extensions"]["bazaar"] == bazaar_schema()
    assert signed[0]["accepted"]["payTo"] == PAY_TO.lower()


async def test_a_lower_case_payto_outside_the_allow_list_is_still_refused(serve_app, key: str) -> None:
    other = "0x" + "7" * 40
    fake = FakeStudio(accepts=[requirement(payTo=other)])
    fake.quote = router_quote(fake)  # type: ignore[method-assign]
    policy = WalletPolicy(allowed_pay_to=frozenset({PAY_TO}))
    async with StableStudioClient(key, base_url=serve_app(fake.app()), policy=policy) as c:
        with pytest.raises(PolicyRefused) as refused:
            await c.submit_edit(EditRequest(prompt="snow", images=["https://b.example/x.png"]))
    assert refused.value.reason == "pay_to_not_allowed"
    assert fake.signatures == []
