"""SIWX on the job and confirm routes, job ownership, the job list, and result URLs."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header

from prefect_stablestudio.simulator import Simulator
from prefect_stablestudio.simulator.encoding import iso
from prefect_stablestudio.simulator.siwx import siwe_message
from tests.simulator.helpers import (
    EDIT_PATH,
    decode_header,
    edit_body,
    encode_header,
    paid_post,
    siwx_header,
    siwx_request,
    upload_image,
)


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


async def submit(http: httpx.AsyncClient, account: LocalAccount, blob_api_url: str, **overrides: Any) -> str:
    blob_url = await upload_image(http, account, blob_api_url)
    response, _ = await paid_post(http, account, EDIT_PATH, edit_body(blob_url, **overrides))
    assert response.status_code == 200, response.text
    return str(response.json()["jobId"])


def client_proof(account: LocalAccount, origin: str, path: str, **overrides: str) -> str:
    """A proof with a client-chosen nonce, signed by hand over the EIP-4361 text."""
    now = time.time()
    proof = {
        "domain": origin.removeprefix("http://"),
        "address": account.address,
        "statement": "Sign in to verify your wallet identity",
        "uri": f"{origin}{path}",
        "version": "1",
        "chainId": "eip155:8453",
        "type": "eip191",
        "nonce": secrets.token_hex(16),
        "issuedAt": iso(now),
        "expirationTime": iso(now + 300),
        **overrides,
    }
    proof["signature"] = "0x" + account.sign_message(encode_defunct(text=siwe_message(proof))).signature.hex()
    return encode_header(proof)


async def test_challenge_is_bound_to_the_simulator_origin(sim: Simulator, http: httpx.AsyncClient) -> None:
    response = await http.get("/api/jobs/whatever")
    assert response.status_code == 402
    assert response.headers["cache-control"] == "no-store"
    required = decode_header(response.headers["payment-required"])
    assert response.json() == required
    assert required["accepts"] == [] and required["error"] == "SIWX authentication required"
    info = required["extensions"]["sign-in-with-x"]["info"]
    assert info["domain"] == sim.base_url.removeprefix("http://")
    assert info["uri"] == f"{sim.base_url}/api/jobs/whatever"
    assert len(info["nonce"]) == 32 and info["chainId"] == "eip155:8453" and info["type"] == "eip191"
    assert required["resource"]["description"] == "Get a job"
    assert "x-agent-identity" in response.headers
    assert (
        '"amount":"0"'
        in base64.urlsafe_b64decode(
            response.headers["www-authenticate"].split('request="')[1].split('"')[0] + "=="
        ).decode()
    )  # the router's zero-amount MPP charge beside the SIWX challenge


async def test_the_siwx_domain_is_the_host_name_alone_when_the_setting_says_so(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(siwx_domain_with_port=False)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        challenge = await http.get("/api/jobs")
        info = decode_header(challenge.headers["payment-required"])["extensions"]["sign-in-with-x"]["info"]
        assert info["domain"] == "127.0.0.1"
        # The official SDK refuses such a challenge off port 80 (docs/decisions.md): sign by hand.
        hostname_only = client_proof(fresh_account, server.base_url, "/api/jobs", domain="127.0.0.1")
        assert (await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": hostname_only})).status_code == 200
        with_port = client_proof(fresh_account, server.base_url, "/api/jobs")  # domain host:port
        refused = await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": with_port})
        assert (refused.status_code, refused.json()["error"]) == (402, "siwx_malformed")


async def test_sdk_message_equals_the_rebuilt_eip4361_text(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    challenge = await http.get("/api/jobs/x")
    proof = decode_header(await siwx_header(fresh_account, challenge))
    recovered = Account.recover_message(
        encode_defunct(text=siwe_message(proof)), signature=proof["signature"]
    )
    assert recovered == fresh_account.address


async def test_job_is_readable_by_its_payer_only(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    job_id = await submit(http, fresh_account, sim.blob_api_url)
    mine = await siwx_request(http, fresh_account, "GET", f"/api/jobs/{job_id}")
    assert mine.status_code == 200 and mine.json()["jobId"] == job_id
    assert mine.json()["status"] in ("pending", "loading", "complete")
    stranger = await siwx_request(http, Account.create(), "GET", f"/api/jobs/{job_id}")
    assert stranger.status_code == 404 and stranger.json()["error"] == "not_found"
    unknown = await siwx_request(http, fresh_account, "GET", "/api/jobs/does-not-exist")
    assert unknown.status_code == 404


async def test_proof_for_another_origin_is_refused(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    failures = sim.state()["counters"]["siwx_failures"].get("siwx_malformed", 0)
    challenge = decode_header((await http.get("/api/jobs/x")).headers["payment-required"])
    info = {**challenge["extensions"]["sign-in-with-x"]["info"], "type": "eip191"}
    other = "http://127.0.0.1:1"
    info.update(domain="127.0.0.1:1", uri=f"{other}/api/jobs/x")
    header = encode_siwx_header(await create_siwx_payload(info, fresh_account, f"{other}/api/jobs/x"))
    response = await http.get("/api/jobs/x", headers={"SIGN-IN-WITH-X": header})
    assert response.status_code == 402
    assert response.json()["error"] == "siwx_malformed"  # the router's code for another domain
    # As the router: no new challenge with a refusal (a client asks for one with an unsigned request).
    assert "payment-required" not in response.headers
    assert sim.state()["counters"]["siwx_failures"]["siwx_malformed"] == failures + 1


async def test_reused_nonce_is_refused(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    header = await siwx_header(fresh_account, await http.get("/api/jobs"))
    assert (await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": header})).status_code == 200
    again = await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": header})
    assert again.status_code == 402 and again.json()["error"] == "siwx_nonce_used"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"issuedAt": iso(time.time() - 400)}, "siwx_expired"),
        ({"expirationTime": iso(time.time() - 1)}, "siwx_expired"),
        ({"issuedAt": "yesterday"}, "siwx_malformed"),
        ({"chainId": "eip155:1"}, "siwx_malformed"),
    ],
    ids=["too-old", "expired", "bad-timestamp", "other-chain"],
)
async def test_stale_or_malformed_proofs_are_refused(
    sim: Simulator,
    http: httpx.AsyncClient,
    fresh_account: LocalAccount,
    overrides: dict[str, str],
    reason: str,
) -> None:
    header = client_proof(fresh_account, sim.base_url, "/api/jobs", **overrides)
    response = await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": header})
    assert response.status_code == 402 and response.json()["error"] == reason


async def test_signature_by_someone_else_is_refused(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    proof = decode_header(client_proof(Account.create(), sim.base_url, "/api/jobs"))
    proof["address"] = fresh_account.address
    response = await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": encode_header(proof)})
    assert response.status_code == 402 and response.json()["error"] == "siwx_invalid_signature"


async def test_client_chosen_nonce_depends_on_the_setting(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    for accept, expected in ((True, 200), (False, 402)):
        server = make_sim(siwx_accept_client_nonce=accept)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            header = client_proof(fresh_account, server.base_url, "/api/jobs")
            response = await http.get("/api/jobs", headers={"SIGN-IN-WITH-X": header})
            assert response.status_code == expected
            # A server-issued nonce works either way.
            assert (await siwx_request(http, fresh_account, "GET", "/api/jobs")).status_code == 200


async def test_job_list_is_the_callers_newest_first_with_status_filter(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(latency_seconds=0)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        first = await submit(http, fresh_account, server.blob_api_url, prompt="first")
        second = await submit(http, fresh_account, server.blob_api_url, prompt="second")
        await submit(http, Account.create(), server.blob_api_url)
        listed = (await siwx_request(http, fresh_account, "GET", "/api/jobs?limit=20&status=complete")).json()
        assert [j["jobId"] for j in listed["jobs"]] == [second, first]
        assert listed["jobs"][0]["input"]["prompt"] == "second" and listed["jobs"][0]["createdAt"]
        limited = (await siwx_request(http, fresh_account, "GET", "/api/jobs?limit=1")).json()
        assert [j["jobId"] for j in limited["jobs"]] == [second]
        pending = (await siwx_request(http, fresh_account, "GET", "/api/jobs?status=pending")).json()
        assert pending["jobs"] == []


async def test_job_goes_pending_loading_complete(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    job_id = await submit(http, fresh_account, sim.blob_api_url)
    seen: list[tuple[str, int | None]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not seen or seen[-1][0] != "complete"):
        view = (await siwx_request(http, fresh_account, "GET", f"/api/jobs/{job_id}")).json()
        seen.append((view["status"], view["progress"]))
        await asyncio.sleep(0.01)
    statuses = [s for s, _ in seen]
    assert statuses[-1] == "complete"
    order = {"pending": 0, "loading": 1, "complete": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    progress = [p for _, p in seen if p is not None]
    assert progress == sorted(progress) and progress[-1] == 100


async def test_result_url_expires(make_sim: Callable[..., Simulator], fresh_account: LocalAccount) -> None:
    server = make_sim(latency_seconds=0, result_ttl_seconds=0.3)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        job_id = await submit(http, fresh_account, server.blob_api_url, output_format="jpg")
        view = (await siwx_request(http, fresh_account, "GET", f"/api/jobs/{job_id}")).json()
        fresh = await http.get(view["result"]["imageUrl"])
        assert fresh.status_code == 200 and fresh.headers["content-type"] == "image/jpeg"
        # Waiting out the URL's lifetime is the behaviour under test, not synchronisation.
        await asyncio.sleep(0.4)
        assert (await http.get(view["result"]["imageUrl"])).status_code == 410
