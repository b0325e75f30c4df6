"""SIWX pure logic: challenge parsing, the origin check, the EIP-4361 text."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from prefect_stablestudio.client import ProtocolError, UntrustedChallenge
from prefect_stablestudio.client.server_values import check_challenge_origin
from prefect_stablestudio.client.siwx import (
    client_nonce_info,
    eip4361_message,
    parse_challenge,
    sign_proof,
)
from tests.client.helpers import SIWX_URL as URL
from tests.client.helpers import challenge_info as info

ADDRESS = "0x71C7656EC7ab88b098defB751B7401B5f6d8976F"


def test_eip4361_text_is_exact() -> None:
    assert eip4361_message(info(), ADDRESS) == (
        "127.0.0.1:8123 wants you to sign in with your Ethereum account:\n"
        f"{ADDRESS}\n"
        "\n"
        "Sign in to verify your wallet identity\n"
        "\n"
        f"URI: {URL}\n"
        "Version: 1\n"
        "Chain ID: 8453\n"
        "Nonce: 0123456789abcdef0123456789abcdef\n"
        "Issued At: 2026-11-24T00:00:00.123456Z\n"
        "Expiration Time: 2026-11-24T00:05:00.123456Z"
    )


def test_eip4361_optional_lines_follow_the_standard_order() -> None:
    text = eip4361_message(
        info(statement=None, notBefore="2026-11-24T00:00:00Z", requestId="r1", resources=["https://a/1"]),
        ADDRESS,
    )
    assert f"{ADDRESS}\n\n\nURI:" in text
    assert text.endswith(
        "Expiration Time: 2026-11-24T00:05:00.123456Z\nNot Before: 2026-11-24T00:00:00Z\nRequest ID: r1\n"
        "Resources:\n- https://a/1"
    )


def test_parse_challenge_reads_the_extension() -> None:
    pr = {
        "x402Version": 2,
        "accepts": [],
        "extensions": {
            "sign-in-with-x": {
                "info": info(),
                "supportedChains": [{"chainId": "eip155:8453", "type": "eip191"}],
            }
        },
    }
    challenge = parse_challenge(pr)
    assert challenge is not None and challenge.chain_id == "eip155:8453"
    assert challenge.info["issuedAt"] == "2026-11-24T00:00:00.123456Z"
    assert parse_challenge({"x402Version": 2, "accepts": []}) is None


def test_parse_challenge_without_evm_chain_is_refused() -> None:
    pr = {
        "extensions": {
            "sign-in-with-x": {
                "info": info(chainId=None),
                "supportedChains": [{"chainId": "solana:x", "type": "ed25519"}],
            }
        }
    }
    with pytest.raises(ProtocolError):
        parse_challenge(pr)


@pytest.mark.parametrize(
    "bad",
    [
        {"domain": "evil.example"},
        {"domain": "127.0.0.1:9999"},
        {"domain": "localhost:8123"},
        {"uri": "https://127.0.0.1:8123/api/jobs/abc"},
        {"uri": "http://evil.example/api/jobs/abc"},
        {"uri": "not a url"},
    ],
)
def test_challenges_for_another_origin_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(UntrustedChallenge):
        check_challenge_origin(info(**bad), URL)


def test_challenge_for_our_origin_is_accepted() -> None:
    check_challenge_origin(info(uri="http://127.0.0.1:8123/other/path"), URL)
    # @agentcash/router names the host without its port; the uri still pins the origin.
    check_challenge_origin(info(domain="127.0.0.1"), URL)


def test_client_nonce_info_is_fresh_and_bound_to_the_url() -> None:
    a, b = client_nonce_info(URL), client_nonce_info(URL)
    assert a["nonce"] != b["nonce"] and len(a["nonce"]) == 32
    assert a["domain"] == "127.0.0.1:8123" and a["uri"] == URL
    assert a["issuedAt"].endswith("Z") and a["expirationTime"] > a["issuedAt"]
    check_challenge_origin(a, URL)


def test_sign_proof_recovers_to_the_wallet_and_echoes_strings_exactly() -> None:
    account = Account.create()
    proof = sign_proof(account, info())
    assert proof["issuedAt"] == "2026-11-24T00:00:00.123456Z"
    assert proof["address"] == account.address
    text = eip4361_message(proof, account.address)
    assert Account.recover_message(encode_defunct(text=text), signature=proof["signature"]) == account.address
