"""One wallet talking to one StableStudio origin: plain requests, counted, and SIWX-authenticated requests.

`Session` is internal plumbing shared by the payment flow, uploads and the public client.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from prefect_stablestudio.client._http import ClientStats, refuse_redirect
from prefect_stablestudio.client.encoding import canonical_json, decode_b64_json
from prefect_stablestudio.client.errors import AuthenticationFailed, PolicyRefused, ProtocolError
from prefect_stablestudio.client.server_values import check_siwx_challenge
from prefect_stablestudio.client.signer import Signer
from prefect_stablestudio.client.siwx import (
    SIWX_HEADER,
    SiwxChallenge,
    client_nonce_info,
    encode_proof,
    parse_challenge,
    sign_proof,
)

__all__ = ["Session", "SiwxMode"]

SiwxMode = Literal["auto", "client_nonce", "challenge"]


class Session:
    """HTTP plus identity for one client. Never follows redirects on API calls."""

    def __init__(
        self,
        base_url: str,
        signer: Signer,
        http: httpx.AsyncClient | None,
        siwx_mode: SiwxMode,
        stats: ClientStats,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.http = http
        self.siwx_mode = siwx_mode
        # "auto" starts optimistic (one request per call) and drops to the challenge flow for good on refusal.
        self.siwx_in_use: Literal["client_nonce", "challenge"] = (
            "challenge" if siwx_mode == "challenge" else "client_nonce"
        )
        self.stats = stats
        # The server's clock minus ours, from the last `Date` header: client-chosen SIWX proofs are stamped
        # with the server's time, so a skewed local clock cannot make them "issued in the future" or expired.
        self.clock_offset = timedelta(0)

    def server_now(self) -> datetime:
        """Our best estimate of the server's clock (local time when no `Date` header was seen yet).

        `Date` has whole seconds and names the second the reply was made, so the estimate is at or a little
        before the server's true time: a proof stamped with it is never issued in the server's future.
        """
        return datetime.now(UTC) + self.clock_offset

    def _note_server_clock(self, response: httpx.Response) -> None:
        value = response.headers.get("date")
        if not value:
            return
        try:
            stamp = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return  # a malformed Date teaches nothing
        if stamp.tzinfo is None:
            return
        self.clock_offset = stamp - datetime.now(UTC)

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """Absolute URL on the API origin."""
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}{path}{query}"

    async def send(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request to the API origin, counted under `kind`; any redirect is refused.

        Raises:
            httpx.TransportError: no (complete) response; callers decide whether that is ambiguous.
            ProtocolError: the server answered with a redirect.
        """
        all_headers = {"accept": "application/json", **(headers or {})}
        if content is not None:
            all_headers.setdefault("content-type", "application/json")
        if self.http is None:
            raise RuntimeError("client is closed")
        self.stats.requests[kind] += 1
        response = await self.http.request(method, url, content=content, headers=all_headers)
        self._note_server_clock(response)
        refuse_redirect(response, f"{method} {url}")
        return response

    async def siwx_request(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """A request authenticated with Sign-In-With-X. Returns the first non-402 response.

        Never pays: a 402 that asks for payment raises `PolicyRefused`.

        Raises:
            AuthenticationFailed: the server refused our proof.
            UntrustedChallenge: the challenge names another origin or breaks the EIP-4361 grammar (nothing
                is signed).
            PolicyRefused: the route asked for a payment.
        """
        url = self.url(path, params)
        content = canonical_json(json_body) if json_body is not None else None

        async def attempt(proof: dict[str, Any] | None) -> httpx.Response:
            headers = {SIWX_HEADER: encode_proof(proof)} if proof is not None else None
            return await self.send(kind, method, url, content=content, headers=headers)

        challenge: SiwxChallenge | None = None
        if self.siwx_in_use == "client_nonce":
            response = await attempt(self._sign(client_nonce_info(url, now=self.server_now())))
            if response.status_code != 402:
                return response
            refusal = self._siwx_402(response)
            if self.siwx_mode == "client_nonce":
                raise AuthenticationFailed(
                    f"server refused a client-nonce SIWX proof: {refusal.get('error')}",
                    reason=str(refusal.get("error")),
                )
            # The server may send a fresh challenge with its refusal; @agentcash/router does not, and then
            # one plain request below fetches one.
            challenge = parse_challenge(refusal)
            self.siwx_in_use = "challenge"
        if challenge is None:
            response = await attempt(None)
            if response.status_code != 402:
                return response
            challenge = parse_challenge(self._siwx_402(response))
            if challenge is None:
                raise AuthenticationFailed("402 without a sign-in-with-x challenge", reason="no_challenge")
        self.stats.siwx_challenges += 1
        check_siwx_challenge(challenge.info, url, challenge.chain_id)
        response = await attempt(self._sign(challenge.info, challenge.chain_id))
        if response.status_code == 402:
            refusal = self._siwx_402(response)
            reason = str(refusal.get("error") or "siwx_refused")
            raise AuthenticationFailed(f"server refused our SIWX proof: {reason}", reason=reason)
        return response

    def _sign(self, info: dict[str, Any], chain_id: str | None = None) -> dict[str, Any]:
        self.stats.siwx_proofs_signed += 1
        return sign_proof(self.signer, info, chain_id=chain_id)

    @staticmethod
    def _siwx_402(response: httpx.Response) -> dict[str, Any]:
        """Merge the 402's PAYMENT-REQUIRED header and JSON body; refuse if it asks for money."""
        merged: dict[str, Any] = {}
        try:
            body = response.json()
            if isinstance(body, dict):
                merged.update(body)
        except ValueError:
            pass
        header = response.headers.get("payment-required")
        if header:
            try:
                decoded = decode_b64_json(header)
            except ProtocolError as exc:
                if "extensions" not in merged:
                    # Nothing else to go on: say what was wrong rather than "no challenge".
                    raise ProtocolError(f"SIWX 402 has an unusable PAYMENT-REQUIRED: {exc}") from None
                decoded = None
            if isinstance(decoded, dict):
                # The body's error code is the specific one ("siwx_expired"); keep it.
                merged = {**decoded, "error": merged.get("error", decoded.get("error"))}
        if merged.get("accepts"):
            raise PolicyRefused(
                "a SIWX route asked for a payment; polling is never paid", reason="payment_on_siwx_route"
            )
        return merged
