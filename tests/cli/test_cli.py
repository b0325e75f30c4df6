"""The `prefect-stablestudio` command line, run in-process with typer's CliRunner.

Commands that need Prefect run against the session's Prefect API and the session simulator. Every test that
handles a key asserts that its hex appears nowhere in what the command printed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from prefect_stablestudio.cli import app
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)


def new_key() -> tuple[str, str]:
    account = Account.create()
    return "0x" + bytes(account.key).hex(), account.address


def assert_key_absent(result: Any, key: str) -> None:
    text = (result.output + (result.stderr or "")).lower()
    assert key[2:].lower() not in text


# -- no Prefect needed ---------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "edit", "quote", "simulator", "wallet", "budget"):
        assert command in result.output
    wallet = invoke("wallet", "--help")
    assert wallet.exit_code == 0 and "create" in wallet.output and "show" in wallet.output
    edit = invoke("edit", "--help")
    assert edit.exit_code == 0
    for option in ("--prompt", "--wallet", "--out", "--aspect-ratio", "--resolution", "--seed", "--upsample"):
        assert option in edit.output


def test_simulator_help_passes_through_to_the_simulator() -> None:
    result = invoke("simulator", "--help")
    assert result.exit_code == 0 and "--latency" in result.output and "--faults" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["edit", "photo.png"],  # no --prompt
        ["edit", "does-not-exist.png", "--prompt", "x"],
        ["edit", "--prompt", "x"],  # no image
        ["wallet", "create", "w", "--max-total", "lots"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output


def test_edit_refuses_a_bad_option_value_before_anything_runs(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    result = invoke("edit", str(image), "--prompt", "x", "--resolution", "8 MP")
    assert result.exit_code == 2 and "0.5 MP" in result.output


# -- against the session's Prefect API and simulator ----------------------------------------------------


@pytest.fixture
def wallet_name(prefect_api: str) -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def test_wallet_create_reads_the_key_from_the_environment_and_never_prints_it(
    sim: Any, wallet_name: str
) -> None:
    key, address = new_key()
    result = invoke(
        "wallet", "create", wallet_name, "--base-url", sim.base_url, "--blob-api-url", sim.blob_api_url,
        "--max-total", "0.2", "--max-per-day", "0.15", env={"STABLESTUDIO_PRIVATE_KEY": key},
    )
    assert result.exit_code == 0, result.output
    assert address in result.output and "$0.2" in result.output
    assert_key_absent(result, key)

    from prefect_stablestudio.blocks import StableStudioWallet

    saved = StableStudioWallet.load(wallet_name)
    assert saved.private_key.get_secret_value() == key and saved.base_url == sim.base_url

    shown = invoke("wallet", "show", wallet_name)
    assert shown.exit_code == 0 and address in shown.output and "$0.15" in shown.output
    assert_key_absent(shown, key)

    again = invoke("wallet", "create", wallet_name, env={"STABLESTUDIO_PRIVATE_KEY": key})
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert_key_absent(again, key)


def test_wallet_create_asks_for_the_key_with_a_hidden_prompt(wallet_name: str) -> None:
    key, address = new_key()
    result = invoke("wallet", "create", wallet_name, env={"STABLESTUDIO_PRIVATE_KEY": ""}, input=key + "\n")
    assert result.exit_code == 0, result.output
    assert "Private key" in result.output and address in result.output
    assert_key_absent(result, key)


def test_wallet_create_refuses_a_bad_key_without_echoing_it(wallet_name: str) -> None:
    bad = "0x" + "zz" * 32
    result = invoke("wallet", "create", wallet_name, env={"STABLESTUDIO_PRIVATE_KEY": bad})
    assert result.exit_code == 1 and "not a valid" in result.output
    assert "zz" * 32 not in result.output and "Traceback" not in result.output


def test_a_missing_wallet_block_is_a_clean_error(tmp_path: Path, prefect_api: str) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    for args in (["wallet", "show", "no-such-wallet"], ["budget", "no-such-wallet"],
                 ["edit", str(image), "--prompt", "x", "--wallet", "no-such-wallet"]):
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert "wallet create no-such-wallet" in result.output and "Traceback" not in result.output


def test_edit_saves_results_then_a_spent_budget_refuses_cleanly(
    sim: Any, wallet_name: str, tmp_path: Path
) -> None:
    key, address = new_key()
    # Two edits fit: 2 x (upload $0.01 + 0.5 MP edit $0.03) = $0.08.
    created = invoke(
        "wallet", "create", wallet_name, "--base-url", sim.base_url, "--blob-api-url", sim.blob_api_url,
        "--max-total", "0.08", env={"STABLESTUDIO_PRIVATE_KEY": key},
    )
    assert created.exit_code == 0, created.output
    images = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png_bytes((i * 70, 40, 40)))
        images.append(str(path))
    out = tmp_path / "out"

    result = invoke(
        "edit", images[0], images[1], "--prompt", "make it snow", "--wallet", wallet_name, "--out", str(out),
        "--resolution", "0.5 MP", "--format", "webp", "--seed", "7",
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["img0-edited.webp", "img1-edited.webp"]
    assert "2/2" in result.output and "$0.08" in result.output
    assert len(payments(sim, address, EDIT_ROUTE)) == 2
    assert_key_absent(result, key)

    spent = invoke("budget", wallet_name)
    assert spent.exit_code == 0
    assert "$0.08" in spent.output and "lifetime" in spent.output

    ledger = payments(sim, address)
    refused = invoke(
        "edit", images[2], "--prompt", "make it snow", "--wallet", wallet_name, "--out", str(out),
        "--resolution", "0.5 MP",
    )
    assert refused.exit_code == 1
    assert "lifetime cap" in refused.output and "Traceback" not in refused.output
    assert payments(sim, address) == ledger  # refused before anything was signed
    assert_key_absent(refused, key)


def test_demo_runs_end_to_end_on_the_simulator(tmp_path: Path, prefect_api: str) -> None:
    result = invoke("demo", "--out", str(tmp_path), "--latency", "0.2")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "results").iterdir())) == 3
    for phrase in ("3 of 3 edits saved", "local simulator", "stablestudio.dev", "wallet create", "Flow run"):
        assert phrase in result.output
    from prefect_stablestudio.blocks import StableStudioWallet

    key = StableStudioWallet.load("stablestudio-demo").private_key.get_secret_value()
    assert_key_absent(result, key)


def test_a_wallet_created_with_only_the_simulators_base_url_edits_without_extra_payments(
    sim: Any, wallet_name: str, tmp_path: Path
) -> None:
    # As a new user would: no --blob-api-url. The simulator advertises its blob API at /_sim/info.
    key, address = new_key()
    created = invoke("wallet", "create", wallet_name, "--base-url", sim.base_url,
                     env={"STABLESTUDIO_PRIVATE_KEY": key})
    assert created.exit_code == 0, created.output
    assert sim.blob_api_url in created.output  # `wallet show` lists the blob API it picked up
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes((200, 10, 10)))
    out = tmp_path / "out"
    result = invoke("edit", str(image), "--prompt", "make it snow", "--wallet", wallet_name,
                    "--out", str(out), "--resolution", "0.5 MP")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["cat-edited.png"]
    assert len(payments(sim, address, UPLOAD_ROUTE)) == 1 and len(payments(sim, address, EDIT_ROUTE)) == 1
    assert len(payments(sim, address)) == 2
    assert_key_absent(result, key)


def test_an_unreachable_blob_api_is_found_before_the_upload_is_paid(
    sim: Any, wallet_name: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/api/blob"
    key, address = new_key()
    created = invoke("wallet", "create", wallet_name, "--base-url", sim.base_url, "--blob-api-url", nowhere,
                     env={"STABLESTUDIO_PRIVATE_KEY": key})
    assert created.exit_code == 0, created.output
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes((10, 200, 10)))
    result = invoke("edit", str(image), "--prompt", "make it snow", "--wallet", wallet_name,
                    "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "blob_api_url" in result.output and nowhere in result.output
    assert payments(sim, address) == []  # nothing paid


def test_quote_prints_each_price_with_its_source_checks_caps_and_balance_and_pays_nothing(
    sim: Any, wallet_name: str, tmp_path: Path
) -> None:
    key, address = new_key()
    created = invoke(
        "wallet", "create", wallet_name, "--base-url", sim.base_url, "--blob-api-url", sim.blob_api_url,
        "--base-rpc-url", f"{sim.base_url}/_sim/rpc/base", "--max-per-day", "0.015",
        env={"STABLESTUDIO_PRIVATE_KEY": key},
    )
    assert created.exit_code == 0, created.output
    assert "balance   $100 on eip155:8453" in created.output  # read from the simulator's Base RPC
    images = []
    for i in range(2):
        path = tmp_path / f"q{i}.png"
        path.write_bytes(png_bytes((i * 90, 10, 10)))
        images.append(str(path))

    intents = ("--intents", str(tmp_path / "intents"))  # a fresh store: the edits are priced at a ceiling
    result = invoke("quote", *images, "--prompt", "make it snow", "--wallet", wallet_name, *intents)
    assert result.exit_code == 1, result.output  # two uploads alone ($0.02) exceed the $0.015 day cap
    assert "server quote" in result.output and "$0.01" in result.output
    assert "rolling 24 h cap: $0.015 left, short by $0.005" in result.output
    assert "balance on eip155:8453: $100 left, enough" in result.output
    assert payments(sim, address) == []
    assert_key_absent(result, key)

    assert "published maximum" in result.output
    fits = invoke("quote", images[0], "--prompt", "make it snow", "--wallet", wallet_name, *intents)
    assert fits.exit_code == 0, fits.output
    assert "Nothing was paid." in fits.output and payments(sim, address) == []


def test_quote_refuses_bad_input_before_anything_runs(tmp_path: Path) -> None:
    assert invoke("quote", "nowhere.png", "--prompt", "x").exit_code == 2
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    assert invoke("quote", str(image), "--prompt", "x", "--resolution", "9 MP").exit_code == 2
