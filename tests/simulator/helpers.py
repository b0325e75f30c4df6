"""The client side of the simulator tests: plain httpx for HTTP, the reference x402 SDK for every signature.

Nothing here comes from ``stablestudio`` (the client under test elsewhere): the simulator is checked against
the reference SDK, so the two sides of the protocol are never written by the same hand.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from PIL import Image
from x402 import x402Client
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact import register_exact_evm_client

EDIT_PATH = "/api/generate/flux-2-pro/edit"


def decode_header(value: str) -> Any:
    """Decode a base64 JSON header."""
    return json.loads(base64.b64decode(value))


def encode_header(value: Any) -> str:
    """Encode JSON as a standard base64 header."""
    return base64.b64encode(json.dumps(value).encode()).decode()


def png_bytes(size: tuple[int, int] = (32, 24), color: str = "teal") -> bytes:
    """A small PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


async def sdk_payment(account: LocalAccount, payment_required_header: str) -> dict[str, Any]:
    """The payment payload the reference SDK builds for a 402's PAYMENT-REQUIRED (as a dict)."""
    client = register_exact_evm_client(x402Client(), account, networks="eip155:8453")
    payload = await client.create_payment_payload(decode_payment_required_header(payment_required_header))
    return dict(json.loads(base64.b64decode(encode_payment_signature_header(payload))))


async def siwx_header(account: LocalAccount, response: httpx.Response) -> str:
    """A SIGN-IN-WITH-X header made by the reference SDK for a SIWX 402 challenge."""
    ext = decode_header(response.headers["payment-required"])["extensions"]["sign-in-with-x"]
    chain = ext["supportedChains"][0]
    info = {**ext["info"], "chainId": chain["chainId"], "type": chain["type"]}
    return str(encode_siwx_header(await create_siwx_payload(info, account, str(response.url))))


async def paid_post(
    http: httpx.AsyncClient, account: LocalAccount, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, dict[str, Any]]:
    """Quote, sign with the SDK, pay: returns the paid response and the payment payload sent."""
    quote = await http.post(path, json=body)
    assert quote.status_code == 402, quote.text
    payload = await sdk_payment(account, quote.headers["payment-required"])
    response = await http.post(path, json=body, headers={"PAYMENT-SIGNATURE": encode_header(payload)})
    return response, payload


async def siwx_request(
    http: httpx.AsyncClient, account: LocalAccount, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """A SIWX-authenticated request: challenge, sign with the SDK, resend."""
    challenge = await http.request(method, path, **kwargs)
    assert challenge.status_code == 402, challenge.text
    header = await siwx_header(account, challenge)
    return await http.request(method, path, headers={"SIGN-IN-WITH-X": header}, **kwargs)


async def upload_image(
    http: httpx.AsyncClient, account: LocalAccount, blob_api_url: str, data: bytes | None = None
) -> str:
    """The three-step upload (paid slot, blob PUT, SIWX confirm); returns the blob URL."""
    data = data if data is not None else png_bytes()
    slot, _ = await paid_post(
        http, account, "/api/upload", {"filename": "photo.png", "contentType": "image/png", "size": len(data)}
    )
    assert slot.status_code == 200, slot.text
    put = await put_blob(http, blob_api_url, slot.json(), data)
    assert put.status_code == 200, put.text
    blob_url = str(put.json()["url"])
    confirm = await siwx_request(
        http,
        account,
        "POST",
        "/api/upload/confirm",
        json={"uploadId": slot.json()["uploadId"], "blobUrl": blob_url},
    )
    assert confirm.status_code == 200, confirm.text
    return blob_url


async def put_blob(
    http: httpx.AsyncClient,
    blob_api_url: str,
    slot: dict[str, Any],
    data: bytes,
    content_type: str = "image/png",
    pathname: str | None = None,
) -> httpx.Response:
    """The Vercel Blob client PUT."""
    return await http.put(
        f"{blob_api_url}/",
        params={"pathname": pathname or slot["pathname"]},
        content=data,
        headers={
            "authorization": f"Bearer {slot['clientToken']}",
            "x-api-version": "12",
            "x-content-type": content_type,
            "x-vercel-blob-access": "public",
        },
    )


def edit_body(blob_url: str, **overrides: Any) -> dict[str, Any]:
    """A complete flux-2-pro edit body (small output, fast to render)."""
    return {
        "prompt": "Make the background a sunset",
        "images": [blob_url],
        "aspect_ratio": "16:9",
        "resolution": "0.5 MP",
        "output_format": "png",
        "output_quality": 80,
        "safety_tolerance": 2,
        "prompt_upsampling": False,
        **overrides,
    }


def assert_payment_rejected(response: httpx.Response, reason: str) -> None:
    """The router's refusal: 402, the code in ``reason``, prose naming it in ``error``, a fresh quote."""
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["reason"] == reason
    assert body["error"].startswith(f"Payment rejected ({reason}): ")
    fresh = decode_header(response.headers["payment-required"])
    assert "error" not in fresh and fresh["accepts"]
    assert "x-agent-identity" in response.headers
