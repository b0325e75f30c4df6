"""`Signer` and EIP-712 hashing against eth-account: the same bytes for random keys, messages, domains."""

from __future__ import annotations

import copy
import pickle
import random
import string

import pytest
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.address import to_checksum_address

from prefect_stablestudio.client import InvalidRequest
from prefect_stablestudio.client.eip712 import domain_separator
from prefect_stablestudio.client.encoding import decode_b64_json, encode_b64_json
from prefect_stablestudio.client.keys import load_account, load_signer
from prefect_stablestudio.client.signer import Signer, as_signer, personal_message_digest
from prefect_stablestudio.client.siwx import client_nonce_info, sign_proof
from prefect_stablestudio.client.x402 import (
    Requirement,
    authorization_digest,
    authorization_typed_data,
    decode_payment_required,
    sign_payment,
)
from tests.client.helpers import USDC, payment_required, quote_for, requirement

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
URL = "https://stablestudio.dev/api/generate/flux-2-pro/edit"


def random_key(rng: random.Random) -> bytes:
    return (rng.randrange(1, SECP256K1_ORDER)).to_bytes(32, "big")


def random_address(rng: random.Random) -> str:
    raw = "0x" + rng.randbytes(20).hex()
    any_case = "0x" + "".join(rng.choice([c.lower(), c.upper()]) for c in raw[2:])  # checksum or not
    return rng.choice([raw, "0x" + raw[2:].upper(), to_checksum_address(raw), any_case])


def random_text(rng: random.Random) -> str:
    alphabet = string.printable + "éü€漢字🙂\u200b"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))


def random_domain(rng: random.Random) -> dict[str, object]:
    return {
        "name": random_text(rng)[:40],
        "version": str(rng.randrange(0, 100)),
        "chainId": rng.choice([1, 8453, 84532, rng.randrange(1, 2**64)]),
        "verifyingContract": random_address(rng),
    }


def test_addresses_and_keys_match_eth_account() -> None:
    rng = random.Random(1)
    for _ in range(50):
        key = random_key(rng)
        account = Account.from_key(key)
        signer = Signer.from_key(key)
        assert signer.address == account.address
        assert as_signer(account).address == account.address
        assert signer.local_account().key == account.key
    assert as_signer(signer) is signer


def test_personal_message_signatures_equal_eth_accounts() -> None:
    rng = random.Random(2)
    for _ in range(200):
        key = random_key(rng)
        text = random_text(rng)
        expected = Account.from_key(key).sign_message(encode_defunct(text=text)).signature
        assert Signer.from_key(key).sign_personal_message(text) == bytes(expected)
    assert Signer.from_key(key).sign_personal_message(text)[64] in (27, 28)


def test_transfer_authorization_digests_and_signatures_equal_eth_accounts() -> None:
    rng = random.Random(3)
    for _ in range(200):
        key = random_key(rng)
        signer = Signer.from_key(key)
        domain = random_domain(rng)
        req = Requirement.from_wire(
            requirement(
                network=f"eip155:{domain['chainId']}",
                asset=domain["verifyingContract"],
                payTo=random_address(rng),
                amount=str(rng.choice([1, 30_000, rng.randrange(0, 2**256)])),
                extra={"name": domain["name"], "version": domain["version"]},
            )
        )
        valid_before = rng.choice([0, 1_800_000_000, rng.randrange(0, 2**256)])
        nonce = rng.randbytes(32)
        typed_data = authorization_typed_data(req, signer.address, valid_before, nonce)
        digest = authorization_digest(req, signer.address, valid_before, nonce)
        assert bytes(encode_typed_data(*typed_data).header) == domain_separator(
            req.extra["name"], req.extra["version"], int(req.network.split(":")[1]), req.asset
        )
        expected = Account.from_key(key).sign_typed_data(*typed_data)
        assert bytes(expected.message_hash) == digest
        assert signer.sign_hash(digest) == bytes(expected.signature)


def test_sign_payment_signs_what_eth_account_signs_from_a_signer_or_a_local_account() -> None:
    rng = random.Random(4)
    key = random_key(rng)
    account = Account.from_key(key)
    pr = decode_payment_required(encode_b64_json(payment_required(URL, [requirement()])))
    quote = quote_for(pr, URL)
    for wallet in (Signer.from_key(key), account):
        payment = sign_payment(wallet, quote)
        inner = decode_b64_json(payment.header)["payload"]
        auth = inner["authorization"]
        assert auth["from"] == payment.payer == account.address
        expected = account.sign_typed_data(
            *authorization_typed_data(
                quote.requirement, account.address, int(auth["validBefore"]), bytes.fromhex(auth["nonce"][2:])
            )
        )
        assert inner["signature"] == "0x" + bytes(expected.signature).hex()


def test_sign_proof_signs_what_eth_account_signs_from_a_signer_or_a_local_account() -> None:
    account = Account.create()
    info = client_nonce_info("https://stablestudio.dev/api/jobs/abc")
    for wallet in (Signer.from_account(account), account):
        proof = sign_proof(wallet, info)
        assert proof["address"] == account.address
        recovered = Account.recover_message(
            encode_defunct(text=_eip4361(proof)), signature=bytes.fromhex(proof["signature"][2:])
        )
        assert recovered == account.address
    assert sign_proof(Signer.from_account(account), info) == sign_proof(account, info)


def _eip4361(proof: dict[str, object]) -> str:
    from prefect_stablestudio.client.siwx import eip4361_message

    return eip4361_message(proof, str(proof["address"]))


def test_the_domain_cache_keeps_every_domain_apart() -> None:
    base = {"name": "USD Coin", "version": "2", "chainId": 8453, "verifyingContract": USDC}
    variants = [
        base,
        {**base, "name": "USDC"},
        {**base, "version": "1"},
        {**base, "chainId": 84532},
        {**base, "chainId": 1},
        {**base, "verifyingContract": "0x036CbD53842c5426634e7929541eC2318f3dCF7e"},
    ]
    # Twice over, so the second pass is answered from the cache.
    for _ in range(2):
        separators = [domain_separator(*v.values()) for v in variants]  # type: ignore[arg-type]
        assert len(set(separators)) == len(variants)
        assert separators == [hash_domain(v) for v in variants]


def test_a_payment_signed_for_one_chain_does_not_verify_on_another() -> None:
    signer = Signer.from_account(Account.create())
    nonce = bytes(32)
    base = Requirement.from_wire(requirement())
    testnet = Requirement.from_wire(requirement(network="eip155:84532"))
    for req, other in ((base, testnet), (testnet, base)):
        signature = signer.sign_hash(authorization_digest(req, signer.address, 10, nonce))
        own = encode_typed_data(*authorization_typed_data(req, signer.address, 10, nonce))
        wrong = encode_typed_data(*authorization_typed_data(other, signer.address, 10, nonce))
        assert Account.recover_message(own, signature=signature) == signer.address
        assert Account.recover_message(wrong, signature=signature) != signer.address


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payTo", "0x209693Bc6afc0C5328bA36FaF03C514EF31228"),  # too short
        ("payTo", "0x209693Bc6afc0C5328bA36FaF03C514EF312287G"),  # not hex
        ("asset", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA029130"),  # too long
        ("amount", str(2**256)),
    ],
)
def test_what_eth_account_refuses_to_encode_is_refused(field: str, value: str) -> None:
    req = Requirement.from_wire(requirement(**{field: value}))
    with pytest.raises(ValueError):
        authorization_digest(req, Account.create().address, 10, bytes(32))
    with pytest.raises(Exception):  # noqa: B017 - eth-abi's encoding errors are not ValueErrors
        encode_typed_data(*authorization_typed_data(req, Account.create().address, 10, bytes(32)))


def test_a_message_hash_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Signer.from_account(Account.create()).sign_hash(b"\x00" * 31)
    assert len(personal_message_digest("")) == 32


def test_the_key_appears_in_no_repr_str_error_or_pickle() -> None:
    key = Account.create().key
    hex_key = bytes(key).hex()
    signer = load_signer("0x" + hex_key)
    texts = [repr(signer), str(signer), f"{signer}", repr([signer])]
    for attempt in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError) as caught:
            attempt(signer)
        texts += [str(caught.value), repr(caught.value)]
    for bad in (bytes(32), SECP256K1_ORDER.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ValueError) as caught_bad:
            Signer.from_key(bad)
        assert caught_bad.value.__context__ is None  # the library's message (maybe with the key) is dropped
        texts.append(str(caught_bad.value))
    with pytest.raises(InvalidRequest) as caught_request:
        load_signer("0x" + SECP256K1_ORDER.to_bytes(32, "big").hex())
    texts += [str(caught_request.value), repr(caught_request.value.__context__)]
    assert signer.address in texts[0]
    for text in texts:
        assert hex_key not in text.lower()
        assert SECP256K1_ORDER.to_bytes(32, "big").hex() not in text.lower()


def test_load_account_still_gives_the_local_account() -> None:
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    assert load_account(key).address == load_signer(key).address == account.address
