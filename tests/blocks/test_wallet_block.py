"""The wallet block: Prefect's block standards, the secret's masking, the address check, registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from PIL import Image
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import ValidationError

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.blocks.wallet import LOGO_PATH


@pytest.mark.smoke
class TestWalletBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return StableStudioWallet

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The stock check downloads `_logo_url`; CI is offline, so check the file the URL serves instead.
        assert block._logo_url is not None and str(block._logo_url).endswith("blocks/logo.png")
        assert LOGO_PATH.stat().st_size < 5_000
        with Image.open(LOGO_PATH) as img:
            assert img.width == img.height
            assert 1000 > img.width > 45


def test_fields_have_titles_and_the_slug_is_pinned() -> None:
    for name, field in StableStudioWallet.model_fields.items():
        assert field.title, name
    assert StableStudioWallet.get_block_type_slug() == "stablestudio-wallet"
    assert StableStudioWallet.get_block_type_name() == "StableStudio Wallet"
    assert StableStudioWallet.model_json_schema()["secret_fields"] == ["private_key"]


def test_address_is_derived_and_the_key_is_masked(payer: LocalAccount, payer_key: str) -> None:
    wallet = StableStudioWallet(private_key=payer_key)
    assert wallet.address == payer.address
    text = repr(wallet) + str(wallet) + wallet.model_dump_json()
    assert payer_key[2:] not in text.lower()
    assert wallet.private_key.get_secret_value() == payer_key


def test_a_matching_address_is_accepted_in_any_case(payer: LocalAccount, payer_key: str) -> None:
    wallet = StableStudioWallet(private_key=payer_key, address=payer.address.lower())
    assert wallet.address == payer.address


def test_a_mismatched_address_is_refused_without_echoing_the_key(payer: LocalAccount, payer_key: str) -> None:
    other = Account.create().address
    with pytest.raises(ValidationError) as info:
        StableStudioWallet(private_key=payer_key, address=other)
    message = str(info.value)
    assert other in message and payer.address in message
    assert payer_key[2:] not in message.lower()


def test_a_malformed_key_is_refused_without_echoing_it() -> None:
    bad = "0x" + "ab" * 31 + "zz"
    with pytest.raises(ValidationError) as info:
        StableStudioWallet(private_key=bad)
    assert "ab" * 31 not in str(info.value)


@pytest.mark.parametrize("value", ["-0.01", "0.0000001"])
def test_caps_are_exact_non_negative_micro_dollars(payer_key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        StableStudioWallet(private_key=payer_key, max_usd_per_day=value)


def test_caps_and_policy_are_exact(payer_key: str) -> None:
    wallet = StableStudioWallet(
        private_key=payer_key, max_usd_per_call="0.05", max_usd_per_day="2.5", allowed_pay_to=["0xAbC"]
    )
    assert wallet.max_usd_per_day == Decimal("2.5")
    assert wallet.caps() == {
        "per call": 50_000,
        "per flow run": None,
        "rolling 24 h": 2_500_000,
        "lifetime": None,
    }
    policy = wallet.policy()
    assert policy.max_amount_per_call == 50_000
    assert policy.allowed_pay_to == frozenset({"0xabc"})
    assert policy.allowed_networks == frozenset({"eip155:8453"})


def test_from_env(payer: LocalAccount, payer_key: str) -> None:
    env = {
        "STABLESTUDIO_PRIVATE_KEY": payer_key,
        "STABLESTUDIO_BASE_URL": "http://127.0.0.1:9",
        "STABLESTUDIO_ALLOWED_NETWORKS": "eip155:8453, eip155:84532",
        "STABLESTUDIO_MAX_USD_PER_CALL": "0.10",
        "STABLESTUDIO_MAX_USD_TOTAL": "20",
    }
    wallet = StableStudioWallet.from_env(env)
    assert wallet.address == payer.address
    assert wallet.base_url == "http://127.0.0.1:9"
    assert wallet.allowed_networks == ["eip155:8453", "eip155:84532"]
    assert wallet.max_usd_per_call == Decimal("0.10")
    assert wallet.max_usd_total == Decimal("20")
    with pytest.raises(KeyError):
        StableStudioWallet.from_env({})


def test_the_entry_point_names_the_module_that_imports_the_block() -> None:
    (ep,) = [e for e in entry_points(group="prefect.collections") if e.name == "prefect_stablestudio"]
    assert ep.value == "prefect_stablestudio.blocks"
    module = ep.load()
    assert module.StableStudioWallet is StableStudioWallet


async def test_saved_block_masks_the_key_in_the_api(prefect_api: str, payer_key: str) -> None:
    wallet = StableStudioWallet(private_key=payer_key, max_usd_per_run="1")
    await wallet.save("masked-wallet", overwrite=True)
    async with httpx.AsyncClient(base_url=prefect_api) as api:
        doc = await api.get(
            "/block_types/slug/stablestudio-wallet/block_documents/name/masked-wallet",
            params={"include_secrets": "false"},
        )
    doc.raise_for_status()
    body = doc.text.lower()
    assert payer_key[2:] not in body
    assert doc.json()["data"]["private_key"] == "********"
    assert doc.json()["data"]["address"] == wallet.address
    loaded = await StableStudioWallet.aload("masked-wallet")
    assert loaded.private_key.get_secret_value() == payer_key
    assert loaded.max_usd_per_run == Decimal("1")


def test_block_register_cli_registers_the_type(prefect_api: str, tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_stablestudio.blocks"],
        cwd=tmp_path,  # any working directory: the module comes from the installed package
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    listing = httpx.get(f"{prefect_api}/block_types/slug/stablestudio-wallet")
    assert listing.status_code == 200
    assert json.loads(listing.text)["name"] == "StableStudio Wallet"
