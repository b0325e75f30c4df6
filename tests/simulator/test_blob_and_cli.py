"""The blob stand-in's checks, the upload confirm, the pure helpers, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from prefect_stablestudio.simulator import FaultPlan, FaultRule, Simulator, parse_fault_spec
from prefect_stablestudio.simulator.cli import build_parser, settings_from_args
from prefect_stablestudio.simulator.jobs import Job
from prefect_stablestudio.simulator.render import output_size
from tests.simulator.helpers import paid_post, png_bytes, put_blob, siwx_request


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


async def new_slot(
    http: httpx.AsyncClient, account: LocalAccount, content_type: str = "image/png"
) -> dict[str, str]:
    slot, _ = await paid_post(
        http, account, "/api/upload", {"filename": "p.png", "contentType": content_type}
    )
    assert slot.status_code == 200
    return dict(slot.json())


async def test_blob_put_serves_the_bytes_back(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    slot = await new_slot(http, fresh_account)
    data = png_bytes()
    put = await put_blob(http, sim.blob_api_url, slot, data)
    assert put.status_code == 200
    body = put.json()
    assert body["pathname"] == slot["pathname"] and body["contentType"] == "image/png"
    assert set(body) == {"url", "downloadUrl", "pathname", "contentType", "contentDisposition", "etag"}
    served = await http.get(body["url"])
    assert served.content == data and served.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda slot: {**slot, "clientToken": slot["clientToken"][:-6] + "AAAAAA"}, 403, "forbidden"),
        (lambda slot: {**slot, "clientToken": "vercel_blob_client_other_abc"}, 403, "forbidden"),
        (lambda slot: {**slot, "pathname": "uploads/else/p.png"}, 400, "client_token_pathname_mismatch"),
    ],
    ids=["tampered-token", "foreign-token", "other-pathname"],
)
async def test_blob_put_checks_the_token(
    sim: Simulator,
    http: httpx.AsyncClient,
    fresh_account: LocalAccount,
    mutate: Callable[[dict[str, str]], dict[str, str]],
    status: int,
    code: str,
) -> None:
    slot = await new_slot(http, fresh_account)
    put = await put_blob(http, sim.blob_api_url, mutate(slot), png_bytes())
    assert put.status_code == status and put.json()["error"]["code"] == code


async def test_blob_put_checks_content_type_and_size(
    make_sim: Callable[..., Simulator], fresh_account: LocalAccount
) -> None:
    server = make_sim(max_upload_bytes=100)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        slot = await new_slot(http, fresh_account)
        wrong_type = await put_blob(http, server.blob_api_url, slot, b"x", content_type="image/gif")
        assert wrong_type.json()["error"]["code"] == "content_type_not_allowed"
        too_big = await put_blob(http, server.blob_api_url, slot, b"x" * 101)
        assert too_big.json()["error"]["code"] == "file_too_large"
        assert (await put_blob(http, server.blob_api_url, slot, b"x" * 100)).status_code == 200


async def test_confirm_is_for_the_payer_and_the_stored_blob(
    sim: Simulator, http: httpx.AsyncClient, fresh_account: LocalAccount
) -> None:
    slot = await new_slot(http, fresh_account)
    blob_url = f"{sim.base_url}/blobs/{slot['pathname']}"
    body = {"uploadId": slot["uploadId"], "blobUrl": blob_url}
    not_yet = await siwx_request(http, fresh_account, "POST", "/api/upload/confirm", json=body)
    assert not_yet.status_code == 400
    url = (await put_blob(http, sim.blob_api_url, slot, png_bytes())).json()["url"]
    body["blobUrl"] = url
    stranger = await siwx_request(http, Account.create(), "POST", "/api/upload/confirm", json=body)
    assert stranger.status_code == 404
    confirmed = await siwx_request(http, fresh_account, "POST", "/api/upload/confirm", json=body)
    assert confirmed.status_code == 200
    upload = confirmed.json()["upload"]
    assert confirmed.json()["success"] is True
    assert upload == {
        "id": slot["uploadId"],
        "blobUrl": url,
        "pathname": slot["pathname"],
        "contentType": "image/png",
        "size": len(png_bytes()),
    }


def test_job_status_follows_time() -> None:
    job = Job("j", "t", "0xa", {}, {}, 100.0, 110.0, fails=False, reference_pathname="p")
    assert [job.status(t) for t in (100.0, 101.0, 105.0, 109.99, 110.0)] == [
        ("pending", 0),
        ("pending", 0),
        ("loading", 50),
        ("loading", 99),
        ("complete", 100),
    ]
    failing = Job("j", "t", "0xa", {}, {}, 100.0, 110.0, fails=True, reference_pathname="p")
    assert failing.status(111.0) == ("failed", None)


@pytest.mark.parametrize(("ratio", "resolution"), [("1:1", "1 MP"), ("16:9", "2 MP"), ("3:4", "0.5 MP")])
def test_output_size_matches_ratio_and_megapixels(ratio: str, resolution: str) -> None:
    width, height = output_size(ratio, resolution)
    w, h = (int(x) for x in ratio.split(":"))
    megapixels = float(resolution.split()[0])
    assert width % 16 == 0 and height % 16 == 0
    assert width / height == pytest.approx(w / h, rel=0.03)
    assert width * height == pytest.approx(megapixels * 1_000_000, rel=0.05)


def test_fault_spec_and_plan(tmp_path: Path) -> None:
    rules = parse_fault_spec("flux-edit:http_5xx:0.2,upload:reset_after_settlement:#2+5")
    assert rules[0] == FaultRule(route="flux-2-pro/edit", kind="http_5xx", rate=0.2)
    assert rules[1].nth == (2, 5) and rules[1].checkpoint == "verified"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps([{"route": "job", "kind": "malformed_json", "rate": 1.0}]))
    assert parse_fault_spec(str(plan_file))[0].kind == "malformed_json"
    with pytest.raises(ValueError):
        parse_fault_spec("upload:http_5xx")
    with pytest.raises(ValueError):
        FaultRule(route="upload", kind="http_5xx")
    plan = FaultPlan(rules, seed=1)
    hits = [plan.decide("verified", "upload", paid=True) is not None for _ in range(6)]
    assert hits == [False, True, False, False, True, False]
    assert plan.decide("request", "upload", paid=False) is None


def test_cli_arguments_become_settings() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--latency",
            "0.5",
            "--fund",
            "0xAbC0000000000000000000000000000000000001=2.5",
            "--default-balance",
            "1",
            "--faults",
            "upload:http_5xx:0.1",
            "--seed",
            "9",
            "--no-client-nonce",
            "--payment-identifier",
            "--validation-order",
            "after_payment",
            "--siwx-domain-without-port",
        ]
    )
    settings = settings_from_args(args)
    assert settings.validation_order == "after_payment" and settings.siwx_domain_with_port is False
    assert settings_from_args(build_parser().parse_args([])).validation_order == "before_quote"
    assert settings.latency_seconds == 0.5 and settings.seed == 9
    assert settings.funded == {"0xAbC0000000000000000000000000000000000001": Decimal("2.5")}
    assert settings.default_balance == 1_000_000
    assert settings.faults[0].kind == "http_5xx"
    assert settings.siwx_accept_client_nonce is False and settings.payment_identifier is True


def test_cli_serves_until_stopped(fresh_account: LocalAccount) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect_stablestudio.simulator",
            "--port",
            "0",
            "--fund",
            f"{fresh_account.address}=3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        base_url = first.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:")
        assert f"STABLESTUDIO_BLOB_API_URL={base_url}/api/blob" in process.stdout.readline() + (
            process.stdout.readline()
        )
        state = httpx.get(f"{base_url}/_sim/state", timeout=10).json()
        assert state["balances"] == {fresh_account.address.lower(): 3_000_000}
    finally:
        process.terminate()
        process.wait(timeout=10)
