"""The rules for server-supplied values, as pure functions (the hostile servers are in
tests/reliability/test_untrusted_values.py)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from prefect_stablestudio.client import EditRequest, InvalidRequest, WalletPolicy
from prefect_stablestudio.client.catalog import build_request
from prefect_stablestudio.client.errors import UntrustedChallenge, UntrustedServerValue
from prefect_stablestudio.client.prices import PUBLISHED_MAX_PRICES, published_max_price
from prefect_stablestudio.client.server_values import (
    check_job_id,
    check_mpp_challenge,
    check_result_url,
    check_siwx_challenge,
    check_upload_ticket,
    client_token_expiry,
)
from prefect_stablestudio.client.sources import check_upload_filename
from tests.client.helpers import SIWX_URL as URL
from tests.client.helpers import challenge_info as info


@pytest.mark.parametrize(
    "job_id",
    [
        "a/b",
        "..",
        ".",
        "../admin",
        "x?y=1",
        "x#f",
        "x%2Fy",
        "a b",
        "a\nb",
        "a\tb",
        "",
        "x" * 129,
        "é",
        7,
        None,
    ],
)
def test_job_ids_that_could_change_the_url_are_refused(job_id: Any) -> None:
    with pytest.raises(UntrustedServerValue) as refused:
        check_job_id(job_id)
    assert refused.value.field == "jobId"


def test_opaque_job_ids_pass() -> None:
    for job_id in ("cmnms7w2m000304l4oz0ewji1", "0a1b2c3d4e5f60718293a4b5c", "job-1_x~y", "x" * 128):
        assert check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example/r.png",  # plain http off loopback
        "ftp://cdn.example/r.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://user:pw@cdn.example/r.png",
        "https://cdn.example@evil.example/r.png",
        "https:///r.png",
        "https://cdn.example/r .png",
        "https://cdn.example/r\n.png",
        "https://cdn.example:99999/r.png",
        "",
        None,
        42,
    ],
)
def test_result_urls_that_are_not_safe_to_fetch_are_refused(url: Any) -> None:
    with pytest.raises(UntrustedServerValue) as refused:
        check_result_url(url, "imageUrl")
    assert refused.value.field == "imageUrl"


def test_https_and_loopback_http_result_urls_pass() -> None:
    for url in (
        "https://x.public.blob.vercel-storage.com/r.webp",
        "http://127.0.0.1:9/r",
        "http://[::1]:9/r",
        "http://localhost/r",
        "http://127.8.0.1/r",
    ):
        assert check_result_url(url) == url


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"statement": "Sign in\nURI: https://evil.example"}, "statement"),
        ({"statement": "tab\there"}, "statement"),
        ({"nonce": "short7c"}, "nonce"),
        ({"nonce": "0123456789abcdef-"}, "nonce"),
        ({"nonce": "0123456789\nabcdef"}, "nonce"),
        ({"issuedAt": "yesterday"}, "issuedAt"),
        ({"issuedAt": "2026-11-24 00:00:00"}, "issuedAt"),
        ({"expirationTime": "2026-11-24T00:05:00"}, "expirationTime"),
        ({"notBefore": "soon"}, "notBefore"),
        ({"version": "2"}, "version"),
        ({"type": "ed25519"}, "type"),
        ({"domain": "127.0.0.1:8123\nevil.example"}, "domain"),
        ({"domain": "127.0.0.1:8123/x"}, "domain"),
        ({"uri": "http://127.0.0.1:8123/api/jobs/abc\nChain ID: 1"}, "uri"),
        ({"uri": "http://127.0.0.1:8123/a b"}, "uri"),
        ({"requestId": "a b"}, "requestId"),
        ({"resources": ["https://ok.example", "bad uri"]}, "resources"),
        ({"resources": "https://not-a-list.example"}, "resources"),
        ({"nonce": None}, "nonce"),
    ],
)
def test_every_malformed_siwx_field_is_refused_and_named(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(UntrustedChallenge) as refused:
        check_siwx_challenge(info(**overrides), URL, "eip155:8453")
    assert refused.value.field == field
    assert refused.value.reason == "untrusted_challenge"


def test_a_challenge_for_an_unsupported_chain_is_refused() -> None:
    with pytest.raises(UntrustedChallenge) as refused:
        check_siwx_challenge(info(chainId="eip155:1"), URL, "eip155:1")
    assert refused.value.field == "chainId"


def test_well_formed_challenges_pass_with_or_without_the_port() -> None:
    check_siwx_challenge(info(), URL, "eip155:8453")
    check_siwx_challenge(info(domain="127.0.0.1", chainId="eip155:84532"), URL, "eip155:84532")
    check_siwx_challenge(
        info(statement=None, expirationTime=None, issuedAt="2026-11-24T00:00:00+02:00"), URL, "eip155:8453"
    )


def client_token(payload: dict[str, Any]) -> str:
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return "vercel_blob_client_store1_" + base64.b64encode(f"{'ab' * 32}.{encoded}".encode()).decode()


def test_a_ticket_without_expires_at_expires_when_its_token_does() -> None:
    valid_until = int(time.time() * 1000) + 300_000
    token = client_token({"pathname": "uploads/1/a.png", "validUntil": valid_until})
    for declared in (None, "in five minutes", 1_700_000_000):
        expiry = check_upload_ticket("u1", token, "uploads/1/a.png", declared)
        assert expiry == datetime.fromtimestamp(valid_until / 1000, UTC)
    declared_expiry = check_upload_ticket("u1", token, "uploads/1/a.png", "2030-01-01T00:00:00.000Z")
    assert declared_expiry == datetime(2030, 1, 1, tzinfo=UTC)
    assert client_token_expiry("vercel_blob_client_store1_!!!") is None
    assert check_upload_ticket("u1", "vercel_blob_client_s_eA==", "uploads/1/a.png", None) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"upload_id": "../x"}, "uploadId"),
        ({"client_token": "Bearer abc"}, "clientToken"),
        ({"client_token": "vercel_blob_client_store_abc def"}, "clientToken"),
        ({"client_token": None}, "clientToken"),
        ({"pathname": "/etc/passwd"}, "pathname"),
        ({"pathname": "uploads/../../x.png"}, "pathname"),
        ({"pathname": "uploads//x.png"}, "pathname"),
        ({"pathname": "uploads/x\n.png"}, "pathname"),
        ({"pathname": "a" * 951}, "pathname"),
        ({"pathname": ""}, "pathname"),
    ],
)
def test_bad_upload_tickets_are_refused_and_named(fields: dict[str, Any], field: str) -> None:
    ticket = {
        "upload_id": "u1",
        "client_token": client_token({"validUntil": 1}),
        "pathname": "uploads/1/a.png",
    }
    ticket.update(fields)
    with pytest.raises(UntrustedServerValue) as refused:
        check_upload_ticket(ticket["upload_id"], ticket["client_token"], ticket["pathname"], None)
    assert refused.value.field == field


MPP_REQUEST = {
    "amount": "45000",
    "currency": "0x" + "a" * 40,
    "recipient": "0x" + "b" * 40,
    "methodDetails": {"chainId": 4217},
}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "stablestudio.dev", None, MPP_REQUEST), "id"),
        (("id 1", "stablestudio.dev", None, MPP_REQUEST), "id"),
        (("id1", "evil.example/x", None, MPP_REQUEST), "realm"),
        (("id1", "stablestudio.dev", "tomorrow", MPP_REQUEST), "expires"),
        (("id1", "stablestudio.dev", None, {**MPP_REQUEST, "amount": "4.5"}), "amount"),
        (("id1", "stablestudio.dev", None, {**MPP_REQUEST, "currency": "USDC"}), "currency"),
        (("id1", "stablestudio.dev", None, {**MPP_REQUEST, "recipient": None}), "recipient"),
        (("id1", "stablestudio.dev", None, {**MPP_REQUEST, "methodDetails": "4217"}), "methodDetails"),
    ],
)
def test_malformed_mpp_challenge_fields_are_named(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(UntrustedServerValue) as refused:
        check_mpp_challenge(*args)
    assert refused.value.field == field


def test_a_well_formed_mpp_challenge_passes() -> None:
    check_mpp_challenge("id1", "127.0.0.1:14031", "2026-12-04T10:00:00.123Z", MPP_REQUEST)


def test_implausible_prices_are_refused_above_the_margin_unless_allowed() -> None:
    edit = published_max_price("/api/generate/flux-2-pro/edit")
    assert edit == 60_000
    policy = WalletPolicy(max_amount_per_call=20_000_000)
    assert policy.check_plausible_price(90_000, edit) is None  # exactly +50 %
    refusal = policy.check_plausible_price(90_001, edit)
    assert refusal is not None and refusal[0] == "implausible_price"
    assert WalletPolicy(allow_implausible_prices=True).check_plausible_price(10_000_000, edit) is None
    assert policy.check_plausible_price(10_000_000, published_max_price("/api/generate/new/model")) is None
    assert published_max_price("/api/upload") == 10_000


def test_every_catalog_route_has_a_published_ceiling() -> None:
    from prefect_stablestudio.client.catalog import CATALOG

    assert {f"{m}/{o}" for m, o in CATALOG} <= set(PUBLISHED_MAX_PRICES)


@pytest.mark.parametrize("image", ["not-a-url", "/tmp/a.png", "s3://bucket/a.png", "https://", "https://a b"])
def test_requests_with_an_image_that_is_not_a_url_are_refused_locally(image: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        EditRequest(prompt="p", images=[image])
    assert refused.value.field is not None and refused.value.field.startswith("images")
    for model, op, params in (
        ("flux-2-max", "edit", {"images": [image]}),
        ("seedance", "i2v", {"urls": [image]}),
        ("wan-2.6", "i2v", {"image": image}),
        ("veo-3.1", "generate", {"image": image}),
        ("veo-3.1", "generate", {"lastFrame": image}),
    ):
        with pytest.raises(InvalidRequest):
            build_request(model, op, {"prompt": "p", **params})


@pytest.mark.parametrize("name", ["a/b.png", "a\\b.png", "", "x" * 256, "a\nb.png", ".."])
def test_upload_filenames_the_server_refuses_are_refused_locally(name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_upload_filename(name)
    assert refused.value.field == "filename"
