"""End to end: the flows against the simulator, a real Prefect API and S3 (moto) through s3fs."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.context import FlowRunContext
from prefect.logging.handlers import APILogHandler
from prefect.utilities.callables import parameter_schema

from prefect_stablestudio.flows import (
    EditBatchFailed,
    EditFailed,
    EditItem,
    EditOptions,
    IntentStore,
    edit_image,
    edit_image_sync,
    edit_images,
)
from tests.helpers.ledger import EDIT_ROUTE, UPLOAD_ROUTE, payments, png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")

# The simulator's jobs take ~0.2 s: poll accordingly instead of at Flux's ~5 s.
FAST: dict[str, Any] = {"expected_job_seconds": 0.2}


def put(fs: Any, uri: str, data: bytes) -> str:
    fs.pipe_file(uri.removeprefix("s3://"), data)
    return uri


async def test_single_edit_from_s3_to_s3_pays_once_and_a_rerun_pays_nothing(
    sim: Any, make_wallet: Any, s3_bucket: str, s3fs_filesystem: Any, s3_storage_options: dict[str, Any]
) -> None:
    name, wallet, key = await make_wallet(sim)
    source = put(s3fs_filesystem, f"s3://{s3_bucket}/in/cat.png", png_bytes())
    kwargs: dict[str, Any] = dict(
        wallet_block=name,
        **FAST,
        image=source,
        prompt="make it snow",
        destination=f"s3://{s3_bucket}/out/",
        storage_options=s3_storage_options,
        intent_store_url=f"s3://{s3_bucket}/intents",
    )
    state = await edit_image(**kwargs, return_state=True)
    outcome = await state.result()
    assert outcome.status == "complete" and outcome.paid_now
    assert outcome.output_uri == f"s3://{s3_bucket}/out/cat-edited.png"
    written = s3fs_filesystem.cat_file(f"{s3_bucket}/out/cat-edited.png")
    assert hashlib.sha256(written).hexdigest() == outcome.sha256
    Image.open(io.BytesIO(written)).verify()
    (edit,) = payments(sim, wallet.address, EDIT_ROUTE)
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 1
    assert edit["amount"] == 45_000 and outcome.cost_usd == Decimal("0.045")
    assert outcome.transaction == edit["transaction"]
    intent = await IntentStore(f"s3://{s3_bucket}/intents", s3_storage_options).get(outcome.idempotency_key)
    assert intent is not None and (intent.status, intent.job_id) == ("complete", outcome.job_id)

    again = await edit_image(**kwargs)
    assert again.status == "complete" and not again.paid_now and again.job_id == outcome.job_id
    assert len(payments(sim, wallet.address)) == 2  # still one upload and one edit

    await _assert_no_secret_in_run(state.state_details.flow_run_id, key, sim.base_url)


async def _assert_no_secret_in_run(flow_run_id: Any, key: str, sim_url: str) -> None:
    secret = key[2:].lower()
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert any("saved to" in log.message for log in logs)  # the logs did arrive
    assert {a.type for a in artifacts} >= {"table", "markdown", "progress", "image"}
    text = "\n".join(log.message for log in logs) + "\n".join(a.model_dump_json() for a in artifacts)
    assert secret not in text.lower()
    assert sim_url not in text  # StableStudio's result URLs expire: artifacts link to the user's storage


async def test_batch_from_s3_to_s3_keeps_successes_and_reports_failures(
    sim: Any, make_wallet: Any, s3_bucket: str, s3fs_filesystem: Any, s3_storage_options: dict[str, Any]
) -> None:
    name, wallet, _ = await make_wallet(sim)
    a = put(s3fs_filesystem, f"s3://{s3_bucket}/in/a.png", png_bytes((10, 200, 10)))
    b = put(s3fs_filesystem, f"s3://{s3_bucket}/in/b.png", png_bytes((10, 10, 200)))
    items = [
        EditItem(images=[a]),
        EditItem(images=[b], prompt="paint it", output_name="bee.jpg"),
        EditItem(images=[f"s3://{s3_bucket}/in/missing.png"]),
    ]
    result = await edit_images(
        wallet_block=name,
        **FAST,
        items=items,
        prompt="make it night",
        destination=f"s3://{s3_bucket}/out",
        options=EditOptions(resolution="0.5 MP"),
        storage_options=s3_storage_options,
        max_concurrency=3,
        intent_store_url=f"s3://{s3_bucket}/intents",
        fail_on_error=False,
    )
    assert [o.status for o in result.outcomes] == ["complete", "complete", "failed"]
    assert "FileNotFoundError" in (result.outcomes[2].error or "")
    written = sorted(s3fs_filesystem.ls(f"{s3_bucket}/out"))
    assert written == [f"{s3_bucket}/out/a-edited.png", f"{s3_bucket}/out/bee.jpg"]
    edits = payments(sim, wallet.address, EDIT_ROUTE)
    assert sorted(p["amount"] for p in edits) == [30_000, 30_000]
    assert result.spent_usd == Decimal("0.08")  # two 0.5 MP edits and two uploads

    with pytest.raises(EditBatchFailed) as info:  # by default a partial failure fails the run...
        await edit_images(
            wallet_block=name,
            **FAST,
            items=items,
            prompt="make it night",
            destination=f"s3://{s3_bucket}/out",
            options=EditOptions(resolution="0.5 MP"),
            storage_options=s3_storage_options,
            intent_store_url=f"s3://{s3_bucket}/intents",
        )
    assert len(info.value.result.succeeded) == 2  # ...yet keeps and reports the successes,
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 2  # and a rerun paid nothing new


async def test_a_rerun_after_a_failure_after_payment_pays_nothing_new(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    source = tmp_path / "dog.png"
    source.write_bytes(png_bytes((90, 90, 0)))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    store = str(tmp_path / "intents")
    with pytest.raises(EditFailed) as info:  # paid, polled, then the save fails
        await edit_image(
            wallet_block=name,
            **FAST,
            image=str(source),
            prompt="add a hat",
            destination=str(blocker),
            intent_store_url=store,
        )
    assert info.value.outcome.paid_now and info.value.outcome.job_id
    before = payments(sim, wallet.address)
    assert len([p for p in before if p["route"] == EDIT_ROUTE]) == 1

    outcome = await edit_image(
        wallet_block=name,
        **FAST,
        image=str(source),
        prompt="add a hat",
        destination=str(tmp_path / "out"),
        intent_store_url=store,
    )
    assert outcome.status == "complete" and not outcome.paid_now
    assert outcome.job_id == info.value.outcome.job_id
    assert (tmp_path / "out" / "dog-edited.png").read_bytes()
    assert payments(sim, wallet.address) == before  # the ledger did not move


async def test_an_unknown_outcome_is_recorded_and_only_the_same_payment_is_re_sent(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    from prefect_stablestudio.simulator.faults import FaultRule

    sim = make_sim()
    name, wallet, _ = await make_wallet(sim)
    source = tmp_path / "owl.png"
    source.write_bytes(png_bytes((1, 2, 3)))
    store = str(tmp_path / "intents")
    sim.set_faults([FaultRule(route="flux-edit", kind="reset_before_settlement", rate=1.0)])
    with pytest.raises(EditFailed) as info:
        await edit_image(
            wallet_block=name,
            **FAST,
            image=str(source),
            prompt="owl",
            destination=str(tmp_path),
            intent_store_url=store,
        )
    outcome = info.value.outcome
    assert outcome.status == "unknown"
    intent = await IntentStore(store).get(outcome.idempotency_key)
    assert intent is not None and intent.status == "unknown" and intent.payment is not None
    (owed,) = outcome.unreconciled_payments  # listed for reconciliation too
    assert (owed.what, owed.nonce, owed.status) == ("edit", intent.payment.nonce, "unknown")
    assert payments(sim, wallet.address, EDIT_ROUTE) == []  # every send was cut before settlement

    sim.set_faults([])
    done = await edit_image(
        wallet_block=name,
        **FAST,
        image=str(source),
        prompt="owl",
        destination=str(tmp_path),
        intent_store_url=store,
    )
    assert done.status == "complete" and not done.paid_now
    (edit,) = payments(sim, wallet.address, EDIT_ROUTE)
    assert edit["nonce"].lower() == intent.payment.nonce.lower()  # the recorded authorization, not a new one


async def test_a_job_that_failed_after_payment_is_not_paid_again(
    make_sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    from prefect_stablestudio.simulator.faults import FaultRule

    sim = make_sim()
    sim.set_faults([FaultRule(route="flux-edit", kind="job_failure", nth=[1])])
    name, wallet, _ = await make_wallet(sim)
    source = tmp_path / "fox.png"
    source.write_bytes(png_bytes((4, 5, 6)))
    args: dict[str, Any] = dict(
        wallet_block=name,
        **FAST,
        image=str(source),
        prompt="fox",
        destination=str(tmp_path),
        intent_store_url=str(tmp_path / "intents"),
    )
    with pytest.raises(EditFailed, match="JobFailed"):
        await edit_image(**args)
    with pytest.raises(EditFailed, match="not paying again"):
        await edit_image(**args)
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 1
    done = await edit_image(**args, idempotency_key="second-attempt")  # a deliberate new attempt pays
    assert done.status == "complete" and done.paid_now
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 2


async def test_the_per_run_cap_refuses_at_its_boundary_inside_a_batch(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    # Sequential: upload 0.01 + edit 0.045 per item. Cap 0.12: item 1 -> 0.055, item 2 -> 0.11,
    # item 3's upload -> exactly 0.12 (allowed), its edit would be 0.165: refused.
    name, wallet, _ = await make_wallet(sim, max_usd_per_run="0.12")
    sources = []
    for i in range(3):
        path = tmp_path / f"in{i}.png"
        path.write_bytes(png_bytes((i * 40, 0, 0)))
        sources.append(str(path))
    result = await edit_images(
        wallet_block=name,
        **FAST,
        items=sources,
        prompt="p",
        destination=str(tmp_path / "out"),
        max_concurrency=1,
        intent_store_url=str(tmp_path / "intents"),
        fail_on_error=False,
    )
    assert [o.status for o in result.outcomes] == ["complete", "complete", "refused"]
    assert "per flow run cap of $0.120000" in (result.outcomes[2].error or "")
    assert "remaining $0.000000" in (result.outcomes[2].error or "")
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 2
    assert len(payments(sim, wallet.address, UPLOAD_ROUTE)) == 3
    # The next run has a fresh per-run allowance and finishes the job.
    again = await edit_images(
        wallet_block=name,
        **FAST,
        items=sources,
        prompt="p",
        destination=str(tmp_path / "out"),
        max_concurrency=1,
        intent_store_url=str(tmp_path / "intents"),
    )
    assert [o.status for o in again.outcomes] == ["complete"] * 3
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 3


def test_parameters_render_as_forms() -> None:
    schema = parameter_schema(edit_images).model_dump()
    props = schema["properties"]
    assert props["wallet_block"]["type"] == "string"
    assert "EditItem" in schema["definitions"] and "EditOptions" in schema["definitions"]
    resolution = schema["definitions"]["EditOptions"]["properties"]["resolution"]
    assert resolution["enum"] == ["0.5 MP", "1 MP", "2 MP"]


async def test_flows_run_as_subflows_of_sync_and_async_parents(
    sim: Any, make_wallet: Any, tmp_path: Path
) -> None:
    name, wallet, _ = await make_wallet(sim)
    source = tmp_path / "sub.png"
    source.write_bytes(png_bytes((7, 7, 7)))
    store = str(tmp_path / "intents")

    @flow
    def sync_parent() -> str:
        outcome = edit_image_sync(
            wallet_block=name,
            **FAST,
            image=str(source),
            prompt="x",
            destination=str(tmp_path),
            intent_store_url=store,
        )
        parents["sync"] = FlowRunContext.get().flow_run.id  # type: ignore[union-attr]
        return outcome.status

    @flow
    async def async_parent() -> int:
        result = await edit_images(
            wallet_block=name,
            **FAST,
            items=[str(source)],
            prompt="x",
            destination=str(tmp_path),
            intent_store_url=store,
        )
        return len(result.succeeded)

    parents: dict[str, Any] = {}
    assert sync_parent() == "complete"
    assert await async_parent() == 1
    assert len(payments(sim, wallet.address, EDIT_ROUTE)) == 1  # the same edit: paid once
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parents["sync"]])
            )
        )
    assert [c.name for c in children] and children[0].flow_id is not None  # a real subflow of the sync parent
