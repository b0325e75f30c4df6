"""The raw-protocol baseline: one edit with nothing but httpx and eth-account (no `stablestudio` import).

The minimal correct loop a careful script would write: upload (paid ticket, blob PUT, SIWX confirm), paid
submit (402 -> EIP-3009 authorization -> paid POST), SIWX polls timed by the job's progress, download, write.
It checks nothing a script could skip (no policy, no hooks, no persistence), so its CPU per edit is the floor
the client and the flows are compared with.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount


def _b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode()


def _unb64(text: str) -> Any:
    return json.loads(base64.b64decode(text + "=" * (-len(text) % 4)))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RawClient:
    """x402 and SIWX by hand over one `httpx.AsyncClient`."""

    def __init__(self, account: LocalAccount, base_url: str, http: httpx.AsyncClient) -> None:
        self.account = account
        self.base_url = base_url
        self.http = http

    async def paid_post(self, path: str, body: dict[str, Any]) -> Any:
        """POST, read the 402's requirement, sign a TransferWithAuthorization, POST again with it."""
        url = self.base_url + path
        content = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        quote = await self.send("POST", url, content=content, headers=headers)
        if quote.status_code != 402:
            raise RuntimeError(f"expected 402, got {quote.status_code}: {quote.text[:200]}")
        required = _unb64(quote.headers["payment-required"])
        req = required["accepts"][0]
        valid_before = int(time.time()) + int(req["maxTimeoutSeconds"])
        nonce = secrets.token_bytes(32)
        domain = {
            "name": req["extra"]["name"],
            "version": req["extra"]["version"],
            "chainId": int(req["network"].split(":")[1]),
            "verifyingContract": req["asset"],
        }
        types = {
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ]
        }
        message = {
            "from": self.account.address,
            "to": req["payTo"],
            "value": int(req["amount"]),
            "validAfter": 0,
            "validBefore": valid_before,
            "nonce": nonce,
        }
        signed = self.account.sign_typed_data(domain, types, message)
        payload = {
            "x402Version": 2,
            "resource": required["resource"],
            "accepted": req,
            "payload": {
                "signature": "0x" + bytes(signed.signature).hex(),
                "authorization": {
                    "from": self.account.address,
                    "to": req["payTo"],
                    "value": str(req["amount"]),
                    "validAfter": "0",
                    "validBefore": str(valid_before),
                    "nonce": "0x" + nonce.hex(),
                },
            },
            "extensions": required.get("extensions", {}),
        }
        paid = await self.send(
            "POST", url, content=content, headers={**headers, "PAYMENT-SIGNATURE": _b64(payload)}
        )
        paid.raise_for_status()
        return paid.json()

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, sent once more if a kept-alive connection was closed under it.

        The server (uvicorn) closes connections idle for 5 s and httpx's pool keeps them 5 s, so a request can
        go out on one the server is closing. Sending again is safe for every request here (a paid POST carries
        the same signature, which settles at most once); a careful script does it, and so does the client.
        """
        try:
            return await self.http.request(method, url, **kwargs)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return await self.http.request(method, url, **kwargs)

    def siwx_header(self, url: str) -> str:
        """A Sign-In-With-X proof with a nonce of our own (one request per authenticated call)."""
        now = datetime.now(UTC)
        fields = {
            "domain": urlsplit(url).netloc,
            "address": self.account.address,
            "statement": "Sign in to verify your wallet identity",
            "uri": url,
            "version": "1",
            "chainId": "eip155:8453",
            "type": "eip191",
            "nonce": secrets.token_hex(16),
            "issuedAt": _iso(now),
            "expirationTime": _iso(now + timedelta(minutes=5)),
        }
        text = (
            f"{fields['domain']} wants you to sign in with your Ethereum account:\n{fields['address']}\n\n"
            f"{fields['statement']}\n\nURI: {url}\nVersion: 1\nChain ID: 8453\nNonce: {fields['nonce']}\n"
            f"Issued At: {fields['issuedAt']}\nExpiration Time: {fields['expirationTime']}"
        )
        signed = self.account.sign_message(encode_defunct(text=text))
        return _b64({**fields, "signature": "0x" + bytes(signed.signature).hex()})

    async def siwx(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """An authenticated request."""
        url = self.base_url + path
        headers = {"SIGN-IN-WITH-X": self.siwx_header(url)}
        if body is None:
            return await self.send(method, url, headers=headers)
        return await self.send(method, url, headers=headers, json=body)

    async def upload(self, data: bytes, filename: str, blob_api_url: str) -> str:
        """The three upload steps; returns the blob URL."""
        ticket = await self.paid_post(
            "/api/upload", {"filename": filename, "contentType": "image/png", "size": len(data)}
        )
        put = await self.send(
            "PUT",
            f"{blob_api_url}/?{urlencode({'pathname': ticket['pathname']})}",
            content=data,
            headers={
                "authorization": f"Bearer {ticket['clientToken']}",
                "x-api-version": "12",
                "x-content-type": "image/png",
                "x-vercel-blob-access": "public",
            },
        )
        put.raise_for_status()
        blob_url: str = put.json()["url"]
        confirm = await self.siwx(
            "POST", "/api/upload/confirm", {"uploadId": ticket["uploadId"], "blobUrl": blob_url}
        )
        confirm.raise_for_status()
        return blob_url

    async def wait(self, job_id: str, expected: float) -> dict[str, Any]:
        """Poll: first near the expected turnaround, then when the reported progress says it will be done."""
        start = time.monotonic()
        await asyncio.sleep(expected)
        while True:
            response = await self.siwx("GET", f"/api/jobs/{job_id}")
            response.raise_for_status()
            job: dict[str, Any] = response.json()
            if job["status"] == "complete":
                return job
            if job["status"] == "failed":
                raise RuntimeError(f"job {job_id} failed: {job.get('error')}")
            progress = job.get("progress") or 0
            elapsed = time.monotonic() - start
            delay = elapsed * (100 - progress) / progress if 0 < progress < 100 else 0.5 * expected
            await asyncio.sleep(min(max(delay, 0.2), 15.0))

    async def edit(
        self, data: bytes, filename: str, prompt: str, out_dir: str, blob_api_url: str, expected: float
    ) -> str:
        """Upload, pay for the edit, wait, download, write; returns the path written."""
        blob_url = await self.upload(data, filename, blob_api_url)
        submitted = await self.paid_post(
            "/api/generate/flux-2-pro/edit", {"prompt": prompt, "images": [blob_url]}
        )
        job = await self.wait(submitted["jobId"], expected)
        image = await self.send("GET", job["result"]["imageUrl"])
        image.raise_for_status()
        target = os.path.join(out_dir, f"{os.path.splitext(filename)[0]}-edited.webp")
        await asyncio.to_thread(_write, target, image.content)
        return target


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
