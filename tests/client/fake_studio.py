"""A purpose-built StableStudio for faults the simulator does not produce. It records what it saw.

Behaviour is scripted per test through `FakeStudio` attributes; it speaks just enough of the wire protocol:
quotes on `/api/generate/...` and `/api/upload`, records every PAYMENT-SIGNATURE, serves SIWX-authenticated
`/api/jobs` (checking proofs with the reference SDK would couple this to the oracle, so it only recovers the
signer with eth-account), and can misbehave: hang, fail, redirect, quote hostile terms.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
from prefect_stablestudio.client.siwx import eip4361_message
from tests.client.helpers import payment_required, requirement

Behaviour = Callable[[Request, int], Awaitable[Response | None]]


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payment(self) -> dict[str, Any] | None:
        header = self.headers.get("payment-signature")
        return decode_b64_json(header) if header else None


@dataclass
class FakeStudio:
    """Scriptable server state. `paid_behaviour(request, n)` runs for the n-th paid POST (0-based)."""

    accepts: list[dict[str, Any]] = field(default_factory=lambda: [requirement()])
    extensions: dict[str, Any] = field(default_factory=dict)
    paid_behaviour: Behaviour | None = None
    jobs_behaviour: Behaviour | None = None
    seen: list[Seen] = field(default_factory=list)
    settled_nonces: set[str] = field(default_factory=set)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached_by_pid: dict[str, dict[str, Any]] = field(default_factory=dict)
    paid_count: int = 0
    jobs_count: int = 0

    @property
    def signatures(self) -> list[str]:
        """Every PAYMENT-SIGNATURE nonce received, in order (repeats included)."""
        return [s.payment["payload"]["authorization"]["nonce"] for s in self.seen if s.payment]

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/generate/{model}/{op}", self.generate, methods=["POST"]),
                Route("/api/upload", self.generate, methods=["POST"]),
                Route("/api/jobs", self.list_jobs, methods=["GET"]),
                Route("/api/jobs/{job_id}", self.get_job, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        self.seen.append(seen)
        return seen

    def quote(self, request: Request, error: str = "Payment required") -> Response:
        pr = payment_required(str(request.url), copy.deepcopy(self.accepts), extensions=self.extensions)
        pr["error"] = error
        return Response(
            "{}",
            status_code=402,
            media_type="application/json",
            headers={"PAYMENT-REQUIRED": encode_b64_json(pr), "Cache-Control": "no-store"},
        )

    async def generate(self, request: Request) -> Response:
        seen = await self._record(request)
        payment = seen.payment
        if payment is None:
            return self.quote(request)
        n, self.paid_count = self.paid_count, self.paid_count + 1
        if self.paid_behaviour is not None:
            scripted = await self.paid_behaviour(request, n)
            if scripted is not None:
                return scripted
        return self.settle(seen)

    def settle(self, seen: Seen) -> Response:
        """Settle a payment once; a replay is refused, or answered from cache under a payment-identifier."""
        payment = seen.payment
        assert payment is not None
        nonce = payment["payload"]["authorization"]["nonce"]
        pid = ((payment.get("extensions") or {}).get("payment-identifier") or {}).get("info", {}).get("id")
        if nonce in self.settled_nonces:
            if pid and pid in self.cached_by_pid:
                return self._paid_reply(self.cached_by_pid[pid], payment)
            return JSONResponse(
                {"error": "invalid_exact_evm_payload_authorization_nonce_used", "message": "replay"},
                status_code=402,
            )
        self.settled_nonces.add(nonce)
        job_id = f"job{len(self.jobs) + 1}"
        now = datetime.now(UTC).isoformat()
        self.jobs[job_id] = {
            "jobId": job_id,
            "type": "flux-2-pro-edit",
            "status": "complete",
            "progress": 100,
            "result": {"imageUrl": "http://127.0.0.1/x.webp"},
            "error": None,
            "input": decode_b64_json_body(seen.body),
            "createdAt": now,
            "updatedAt": now,
            "payer": payment["payload"]["authorization"]["from"],
        }
        reply = {"type": "flux-2-pro-edit", "jobId": job_id, "status": "pending", "success": True}
        if pid:
            self.cached_by_pid[pid] = reply
        return self._paid_reply(reply, payment)

    @staticmethod
    def _paid_reply(reply: dict[str, Any], payment: dict[str, Any]) -> Response:
        receipt = {
            "success": True,
            "transaction": "0x" + "ab" * 32,
            "network": "eip155:8453",
            "payer": payment["payload"]["authorization"]["from"],
        }
        return JSONResponse(reply, headers={"PAYMENT-RESPONSE": encode_b64_json(receipt)})

    def _caller(self, request: Request) -> str | None:
        header = request.headers.get("sign-in-with-x")
        if not header:
            return None
        proof = decode_b64_json(header)
        text = eip4361_message(proof, proof["address"])
        signer = Account.recover_message(encode_defunct(text=text), signature=proof["signature"])
        return signer if signer == proof["address"] else None

    async def list_jobs(self, request: Request) -> Response:
        await self._record(request)
        caller = self._caller(request)
        if caller is None:
            return JSONResponse({"error": "siwx_missing_header"}, status_code=402)
        mine = [j for j in self.jobs.values() if j["payer"] == caller]
        return JSONResponse({"jobs": list(reversed(mine))})

    async def get_job(self, request: Request) -> Response:
        await self._record(request)
        n, self.jobs_count = self.jobs_count, self.jobs_count + 1
        if self.jobs_behaviour is not None:
            scripted = await self.jobs_behaviour(request, n)
            if scripted is not None:
                return scripted
        caller = self._caller(request)
        if caller is None:
            return JSONResponse({"error": "siwx_missing_header"}, status_code=402)
        job = self.jobs.get(request.path_params["job_id"])
        if job is None or job["payer"] != caller:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(job)


def decode_b64_json_body(body: bytes) -> Any:
    import json

    return json.loads(body)


async def hang(seconds: float = 1.0) -> None:
    """Hold a reply longer than the client's timeout: the request arrived, the reply is lost."""
    await asyncio.sleep(seconds)


def redirect_to(url: str) -> Response:
    return RedirectResponse(url, status_code=307)
