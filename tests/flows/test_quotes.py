"""Quotes and the pre-flight against the simulator and a real Prefect API: a quote pays nothing, matches what
is then paid item by item, and a batch that cannot finish fails before its first payment."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from prefect_stablestudio.client.errors import PreflightRefused
from prefect_stablestudio.flows import (
    EditOptions,
    IntentStore,
    edit_images,
    edit_new_images,
    quote_edits_flow,
)
from prefect_stablestudio.flows.generate import generate
from prefect_stablestudio.flows.quotes import quote_batch
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")

FAST: dict[str, Any] = {"expected_job_seconds": 0.2}
PRICES = {"0.5 MP": Decimal("0.03"), "1 MP": Decimal("0.045"), "2 MP": Decimal("0.06")}


def images(folder: Path, tag: str, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{tag}-{i}.png"
        path.write_bytes(png_bytes((i * 40 % 256, len(tag) * 20 % 256, 99)))
        paths.append(str(path))
    return paths


async def test_a_quote_pays_nothing_and_signs_nothing(sim: Any, make_wallet: Any, tmp_path: Path) -> None:
    _, wallet, _ = await make_wallet(sim)
    store = IntentStore(str(tmp_path / "intents"))
    before = sim.state()["ledger"]["payments"]

    quote = await quote_batch(wallet, images(tmp_path, "q", 3), "snow", EditOptions(), store=store)

    assert sim.state()["ledger"]["payments"] == before
    assert [line.what for line in quote.lines] == ["upload", "edit"] * 3
    assert all(line.amount_usd == Decimal("0.01") for line in quote.lines if line.what == "upload")
    async with wallet.get_client(enforce_budget=False) as client:
        upload = await client.quote_upload("a.png", "image/png", 1234)
        assert upload is not None and upload.amount == 10_000
        assert client.stats.payments_signed == 0
    assert sim.state()["ledger"]["payments"] == before


async def test_quotes_match_what_is_then_paid_item_by_item_for_every_resolution(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    store_url = str(tmp_path / "intents")
    store = IntentStore(store_url)
    # A fresh store knows no edit price: the edit is priced at a ceiling and labelled so.
    (first,) = images(tmp_path / "in", "warm", 1)
    cold = await quote_batch(wallet, [first], "snow", EditOptions(), store=store)
    assert [line.source for line in cold.lines] == ["server quote", "published maximum"]
    assert cold.lines[1].amount == 60_000  # the price table's $0.06, below the simulator's $10 maxPrice
    await edit_images(name, [first], str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST)

    for resolution, price in PRICES.items():
        options = EditOptions(resolution=resolution)  # type: ignore[arg-type]
        batch = images(tmp_path / "in", resolution.replace(" ", ""), 2)
        quote = await quote_batch(wallet, list(batch), "snow", options, store=store)
        edits = [line for line in quote.lines if line.what == "edit"]
        assert [line.source for line in edits] == ["server quote, same options"] * 2
        assert [line.amount_usd for line in edits] == [price, price]

        result = await edit_images(
            name, list(batch), str(tmp_path / "out"), prompt="snow", options=options,
            intent_store_url=store_url, **FAST,
        )
        assert result.quoted_usd == quote.total_usd
        for index, outcome in enumerate(result.outcomes):
            mine = [line for line in quote.lines if line.item == index]
            assert outcome.upload_cost_usd == sum(x.amount_usd for x in mine if x.what == "upload")
            assert outcome.cost_usd == next(x.amount_usd for x in mine if x.what == "edit")
        assert result.spent_usd == quote.total_usd

    # Paid edits are free on a rerun, and quoted so.
    rerun = await quote_batch(wallet, list(batch), "snow", options, store=store)
    assert rerun.total == 0 and rerun.already_paid == 2
    uploads = payments(sim, wallet.address, UPLOAD_ROUTE)
    edits_paid = payments(sim, wallet.address, EDIT_ROUTE)
    assert len(uploads) == 7 and len(edits_paid) == 7


async def test_a_batch_over_a_cap_fails_before_any_payment_and_within_it_runs_to_the_end(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    store_url = str(tmp_path / "intents")
    name, wallet, _ = await make_wallet(sim, max_usd_per_run="0.10")
    (first,) = images(tmp_path / "in", "warm", 1)
    await edit_images(name, [first], str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST)
    paid_before = len(payments(sim, wallet.address))

    batch = images(tmp_path / "in", "big", 2)  # 2 x ($0.01 + $0.045) = $0.11 > $0.10
    with pytest.raises(PreflightRefused) as refused:
        await edit_images(
            name, list(batch), str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST
        )
    assert "per flow run cap short by $0.01" in str(refused.value)
    assert refused.value.shortfalls == [("per flow run cap", 10_000)]
    assert len(payments(sim, wallet.address)) == paid_before

    result = await edit_images(
        name, batch[:1], str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST
    )
    assert [o.status for o in result.outcomes] == ["complete"]
    assert result.spent_usd == Decimal("0.055")


async def test_a_batch_over_the_balance_fails_before_any_payment_naming_it(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim()
    store_url = str(tmp_path / "intents")
    name, wallet, _ = await make_wallet(sim, base_rpc_url=f"{sim.base_url}/_sim/rpc/base")
    (first,) = images(tmp_path / "in", "warm", 1)
    await edit_images(name, [first], str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST)
    sim.fund(wallet.address, Decimal("-99.9"))  # leaves 100 - 0.055 - 99.9 = $0.045
    paid_before = len(payments(sim, wallet.address))

    batch = images(tmp_path / "in", "broke", 1)  # $0.055
    with pytest.raises(PreflightRefused) as refused:
        await edit_images(
            name, batch, str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST
        )
    assert "balance on eip155:8453 short by $0.01 ($0.045 left)" in str(refused.value)
    assert len(payments(sim, wallet.address)) == paid_before

    sim.fund(wallet.address, Decimal("0.01"))
    result = await edit_images(
        name, batch, str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST
    )
    assert [o.status for o in result.outcomes] == ["complete"]


async def test_a_reserving_run_completes_and_a_run_sharing_its_day_cap_is_refused_at_its_preflight(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    sim = make_sim(latency_seconds=1.5)  # run A is still editing when run B starts
    store_url = str(tmp_path / "intents")
    name, wallet, _ = await make_wallet(sim, max_usd_per_day="0.20")
    (first,) = images(tmp_path / "in", "warm", 1)
    await edit_images(name, [first], str(tmp_path / "out"), prompt="snow", intent_store_url=store_url, **FAST)
    day = wallet.budget()  # $0.145 left

    run_a = asyncio.ensure_future(edit_images(
        name, images(tmp_path / "in", "a", 2), str(tmp_path / "out"), prompt="snow",
        intent_store_url=store_url, reserve_upfront=True, max_concurrency=1, **FAST,
    ))
    for _ in range(600):  # until A's reservation of $0.11 shows on the day cap (a condition, bounded)
        if (await day.remaining())["rolling 24 h"] < 50_000 or run_a.done():
            break
        await asyncio.sleep(0.05)
    paid_before_b = len(payments(sim, wallet.address))
    assert paid_before_b < 5, "run A had already finished: the test proves nothing"

    with pytest.raises(PreflightRefused, match="rolling 24 h cap short by"):
        await edit_images(
            name, images(tmp_path / "in", "b", 1), str(tmp_path / "out"), prompt="snow",
            intent_store_url=store_url, **FAST,
        )
    result_a = await run_a
    assert [o.status for o in result_a.outcomes] == ["complete", "complete"]
    assert result_a.spent_usd == result_a.quoted_usd == Decimal("0.11")
    assert len(payments(sim, wallet.address)) == 2 + 4  # the warm-up and A's; B paid nothing


async def test_a_dry_run_quotes_and_pays_nothing(sim: Any, make_wallet: Any, tmp_path: Path) -> None:
    name, wallet, _ = await make_wallet(sim)
    result = await edit_images(
        name, images(tmp_path / "in", "dry", 2), str(tmp_path / "out"), prompt="snow",
        intent_store_url=str(tmp_path / "intents"), dry_run=True, artifact_prefix="dry", **FAST,
    )
    assert result.outcomes == [] and result.spent_usd == 0
    # Two uploads, two edits at the published maximum ($0.06, a fresh store knows no edit price).
    assert result.quoted_usd == Decimal("0.14")
    assert payments(sim, wallet.address) == []
    async with get_client() as client:
        artifact = await client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dry-quote"]))
        )
    assert artifact and "published maximum" in str(artifact[0].data)


async def test_a_generation_over_the_per_run_cap_is_refused_at_its_preflight(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim, max_usd_per_run="0.02")
    kwargs: dict[str, Any] = dict(
        wallet_block=name, prompt="a lighthouse", destination=str(tmp_path / "out"), model="flux-2-pro",
        operation="generate", params={"resolution": "1 MP"}, expected_job_seconds=0.3,
        intent_store_url=str(tmp_path / "intents"),
    )
    with pytest.raises(PreflightRefused, match=r"per flow run cap short by \$0\.01 \(\$0\.02 left\)"):
        await generate(**kwargs)
    assert payments(sim, wallet.address) == []
    outcome = await generate(**{**kwargs, "params": {"resolution": "0.5 MP"}})  # $0.02 fits exactly
    assert outcome.cost_usd == Decimal("0.02") and len(payments(sim, wallet.address)) == 1


async def test_the_quote_flow_and_a_pipeline_dry_run_pay_nothing(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim, max_usd_per_run="0.01")
    batch = images(tmp_path / "in", "flow", 2)
    quote = await quote_edits_flow(name, batch, prompt="snow", intent_store_url=str(tmp_path / "intents"))
    assert [line.what for line in quote.lines] == ["upload", "edit", "upload", "edit"]
    async with get_client() as client:
        (artifact,) = await client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["stablestudio-quote"])),
            limit=1,
        )
    # The flow reports the shortfall rather than failing: two uploads exceed the $0.01 per-run cap.
    assert "per flow run cap: $0.01 left, short by $0.01" in (artifact.description or "")

    uncapped, other, _ = await make_wallet(sim)
    folders = (str(tmp_path / "in"), str(tmp_path / "out"))
    report = await edit_new_images(uncapped, *folders, "snow", dry_run=True)
    assert report.found == 2 and report.edited == 0 and report.failed == 0
    assert payments(sim, wallet.address) == [] and payments(sim, other.address) == []
