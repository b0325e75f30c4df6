"""One large edit job spread over many Prefect workers: shards, each its own flow run of a deployment.

`edit_sharded` lists a prefix (or takes a list), drops the images whose result already exists, cuts the
rest into shards and starts one run of the `edit-shard` deployment per shard with `run_deployment`. Any
number of workers, on any number of machines, polling the deployment's work pool, share the work. The
parent waits, then aggregates the shards' outcomes into one table artifact and one spend summary.

Why nothing is paid twice, however the work is spread:

- every shard writes its payment intents to ONE store next to the results (`<destination>/.stablestudio-
  intents`, as the pipeline does), so a shard rerun on another machine resumes what another worker paid for;
- the budget is the wallet's spend caps on Prefect's server (global concurrency limits), reserved atomically
  before each payment whichever process pays;
- an image belongs to the same shard on every run (a hash of its URI picks the shard), and each shard's
  runs carry a tag and an idempotency key: a rerun of the parent (or two parents at once) waits for a
  shard run still in flight instead of starting a second one over the same images. Shards whose images are
  all done start nothing.

Shard runs report back through a small JSON record next to the results (`.stablestudio-shards/<flow run
id>.json`): it needs no shared Prefect result storage, only the storage the results already go to.

Example:
    ```python
    from prefect_stablestudio.flows.shards import edit_sharded

    report = await edit_sharded(
        "my-wallet", "s3://photos/edited/", prompt="remove the background",
        source_prefix="s3://photos/incoming/", shards=8,
    )
    print(report.edited, report.skipped, report.spent_usd)
    ```
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments.flow_runs import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run as current_run
from pydantic import Field

from prefect_stablestudio.client.money import usd_cap_from_atomic, usd_from_atomic, usd_from_dollars
from prefect_stablestudio.flows.artifacts import artifact_key, run_table_artifact
from prefect_stablestudio.flows.edit import edit_images
from prefect_stablestudio.flows.models import EditItem, EditOptions, EditOutcome
from prefect_stablestudio.flows.pipelines import INTENTS_FOLDER, _list_relative
from prefect_stablestudio.flows.preflight import preflight_job
from prefect_stablestudio.flows.shard_plan import (
    Shard,
    ShardedJobFailed,
    ShardedReport,
    ShardRecord,
    ShardRun,
    job_items,
    plan_shards,
    read_record,
    shard_digest,
    write_record,
)
from prefect_stablestudio.flows.steps import load_wallet
from prefect_stablestudio.flows.storage import StorageOptions, join_uri

__all__ = [
    "SHARDS_FOLDER",
    "SHARD_DEPLOYMENT",
    "Shard",
    "ShardRecord",
    "ShardRun",
    "ShardedJobFailed",
    "ShardedReport",
    "edit_shard",
    "edit_sharded",
    "plan_shards",
]

SHARDS_FOLDER = ".stablestudio-shards"
SHARD_DEPLOYMENT = "edit-shard/edit-shard"
"""`<flow name>/<deployment name>` of the shard flow in deployments/prefect.yaml and serve.py."""


@flow(name="edit-shard")
async def edit_shard(
    wallet_block: str,
    items: list[EditItem],
    destination: str,
    shard_key: str,
    prompt: Annotated[str | None, Field(max_length=10_000, description="Default prompt.")] = None,
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    max_concurrency: Annotated[int, Field(ge=1, le=64, description="Edits in flight at once.")] = 16,
    storage_options: dict[str, Any] | None = None,
    intent_store_url: str | None = None,
    records_url: str | None = None,
    idempotency_key: str | None = None,
    expected_job_seconds: float = 5.0,
    max_wait_seconds: float = 600.0,
    fail_on_error: bool = True,
    preflight: bool = True,
    reserve_upfront: bool = False,
) -> ShardRecord:
    """One shard of a sharded job: `edit_images` over its items, then a record for the parent.

    Started by `edit_sharded` through the `edit-shard` deployment; it can also be run alone.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block.
        items: the shard's edits.
        destination: folder (local or fsspec URL) where results are written.
        shard_key: the shard's key (from `plan_shards`), copied into the record.
        prompt: prompt for items that have none.
        options: aspect ratio, resolution, format, quality, safety, seed.
        max_concurrency: edits in flight at once in this shard run.
        storage_options: fsspec options for inputs, outputs, intents and the record.
        intent_store_url: the job's shared intent store; default `<destination>/.stablestudio-intents`.
        records_url: where the record goes; default `<destination>/.stablestudio-shards`.
        idempotency_key: passed to `edit_images` (change it to pay deliberately for new edits).
        expected_job_seconds: typical job duration (the first poll comes near it).
        max_wait_seconds: how long to wait for each job.
        fail_on_error: end the run Failed when an edit failed (after writing the record).
        preflight, reserve_upfront: as for `edit_images`, over this shard's edits.

    Example:
        ```python
        record = await edit_shard("my-wallet", [EditItem(images=["s3://b/in/a.png"])], "s3://b/out/", "k")
        ```
    """
    options_fs = dict(storage_options or {})
    result = await edit_images(
        wallet_block=wallet_block,
        items=items,
        destination=destination,
        prompt=prompt,
        options=options,
        max_concurrency=max_concurrency,
        storage_options=storage_options,
        idempotency_key=idempotency_key,
        intent_store_url=intent_store_url or join_uri(destination, INTENTS_FOLDER),
        max_wait_seconds=max_wait_seconds,
        expected_job_seconds=expected_job_seconds,
        fail_on_error=False,
        artifact_prefix=f"stablestudio-shard-{shard_key[:12]}",
        preflight=preflight,
        reserve_upfront=reserve_upfront,
    )
    record = ShardRecord(
        shard_key=shard_key,
        flow_run_id=str(current_run.id),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        outcomes=result.outcomes,
        spent_usd=result.spent_usd,
    )
    await asyncio.to_thread(
        write_record, records_url or join_uri(destination, SHARDS_FOLDER), record, options_fs
    )
    if fail_on_error and result.failed:
        failed = f"{len(result.failed)} of {len(result.outcomes)} edits of shard {shard_key} failed"
        raise RuntimeError(failed)
    return record


async def _run_shard(
    shard: Shard,
    *,
    deployment: str,
    parameters: dict[str, Any],
    records_url: str,
    options: StorageOptions,
    poll_seconds: float,
    max_wait_seconds: float | None,
    attempts: int,
) -> tuple[ShardRun, list[EditOutcome]]:
    """Start (or join) the shard's run, wait for it, read its record; start it again if it left none."""
    logger = get_run_logger()
    seen = ShardRun(index=shard.index, key=shard.key, state="SKIPPED", already_done=shard.done)
    if not shard.items:
        return seen, []
    tag = f"stablestudio-shard-{shard.key}"
    shard_parameters = {
        **parameters, "items": [i.model_dump(mode="json") for i in shard.items], "shard_key": shard.key,
        "records_url": records_url,
    }
    async with get_client() as client:
        target = await client.read_deployment_by_name(deployment)
        for attempt in range(1, attempts + 1):
            earlier = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[target.id])),
            )
            running = [r for r in earlier if r.state is None or not r.state.is_final()]
            if running:
                # A parent that died (or another one running now) left this shard in flight: wait for
                # it rather than start a second run over the same images.
                run = running[0]
                logger.info("shard %d: joining run %s still in flight", shard.index, run.id)
            else:
                # Two parents starting this shard at once send the same key: Prefect creates one run.
                run = await arun_deployment(
                    deployment, parameters=shard_parameters, timeout=0, tags=["stablestudio", tag],
                    idempotency_key=f"{tag}-{len(earlier)}", client=client,
                )
            run = await _wait(client, run, poll_seconds, max_wait_seconds)
            record = await asyncio.to_thread(read_record, records_url, str(run.id), options)
            if record is not None or attempt == attempts:
                break
            # The run died before reporting (its worker crashed, or Prefect's API failed it, e.g. a 503
            # from a busy SQLite server while creating its subflow). Another run resumes from the
            # shared intent store: what the dead one paid for is reused, never paid again.
            logger.warning(
                "shard %d: run %s ended %s without a record; starting it again (attempt %d of %d)",
                shard.index, run.id, run.state.type.value if run.state else "?", attempt + 1, attempts,
            )
    seen.flow_run_id = str(run.id)
    seen.state = run.state.type.value if run.state else "UNKNOWN"
    if record is None:
        logger.error("shard %d: run %s ended %s without a record", shard.index, run.id, seen.state)
        seen.edits = len(shard.items)
        return seen, []
    seen.worker, seen.edits = record.worker, len(record.outcomes)
    seen.saved = sum(1 for o in record.outcomes if o.ok)
    seen.failed, seen.spent_usd = seen.edits - seen.saved, record.spent_usd
    return seen, record.outcomes


async def _check_deployment(name: str) -> None:
    async with get_client() as client:
        try:
            await client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise ValueError(
                f"no deployment {name!r} to run the shards: deploy it (prefect deploy --prefect-file "
                "deployments/prefect.yaml --name edit-shard) or serve it (deployments/serve.py)"
            ) from None


async def _wait(client: Any, run: FlowRun, poll_seconds: float, max_wait_seconds: float | None) -> FlowRun:
    loop = asyncio.get_running_loop()
    deadline = None if max_wait_seconds is None else loop.time() + max_wait_seconds
    while run.state is None or not run.state.is_final():
        if deadline is not None and loop.time() > deadline:
            raise TimeoutError(f"shard run {run.id} not finished after {max_wait_seconds} s")
        await asyncio.sleep(poll_seconds)
        run = await client.read_flow_run(run.id)
    return run


@flow(name="edit-sharded")
async def edit_sharded(
    wallet_block: Annotated[str, Field(description="Name of a saved StableStudio Wallet block.")],
    destination: Annotated[str, Field(description="Folder for results: s3://bucket/out/ or a path.")],
    prompt: Annotated[str, Field(min_length=1, max_length=10_000, description="What to change.")],
    source_prefix: Annotated[str | None, Field(description="Folder of images to edit.")] = None,
    items: Annotated[list[EditItem] | None, Field(description="Or: the edits, as a list.")] = None,
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    shards: Annotated[int, Field(ge=1, le=1000, description="Shard runs (about 1-2 per worker).")] = 4,
    max_concurrency: Annotated[int, Field(ge=1, le=64, description="Edits in flight per shard.")] = 16,
    shard_deployment: Annotated[str, Field(description="<flow>/<deployment> of the shard flow.")] = (
        SHARD_DEPLOYMENT
    ),
    storage_options: dict[str, Any] | None = None,
    intent_store_url: str | None = None,
    idempotency_key: str | None = None,
    expected_job_seconds: float = 5.0,
    poll_seconds: Annotated[float, Field(gt=0, description="How often shard runs are checked.")] = 5.0,
    max_wait_seconds: float | None = None,
    shard_attempts: Annotated[
        int, Field(ge=1, le=10, description="Runs per shard when a run dies before reporting.")
    ] = 3,
    fail_on_error: bool = True,
    preflight: bool = True,
    reserve_upfront: bool = False,
    dry_run: bool = False,
) -> ShardedReport:
    """Edit every image of a prefix (or a list) through shard runs of a deployment; one table, one spend.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block; its caps hold for the whole job.
        destination: folder (local or fsspec URL, shared by all workers) where results are written.
        prompt: the edit (items may carry their own).
        source_prefix: a folder of images (sub-folders included); or give `items`.
        items: the edits as a list; or give `source_prefix`.
        options: aspect ratio, resolution, format, quality, safety, seed.
        shards: how many shard runs the job is cut into.
        max_concurrency: edits in flight in each shard run.
        shard_deployment: the deployment that runs `edit_shard` (`<flow name>/<deployment name>`).
        storage_options: fsspec options for inputs, outputs, intents and records.
        intent_store_url: the job's shared intent store; default `<destination>/.stablestudio-intents`.
        idempotency_key: change it to pay deliberately for new edits of the same inputs.
        expected_job_seconds: typical job duration (the first poll comes near it).
        poll_seconds: how often the parent reads the shard runs' states.
        max_wait_seconds: give up waiting for a shard run after this long (None: wait).
        shard_attempts: runs started for a shard whose run died before reporting (a crashed worker, an
            API error); each new run resumes from the intent store, so nothing is paid twice.
        fail_on_error: end the run Failed when an edit has no saved result (the rest is kept).
        preflight: quote the whole job first and fail before any shard starts if the shared caps (24 h,
            lifetime) or the balance are short (shard runs do not check again; their per-run cap still
            refuses each payment that would break it).
        reserve_upfront: each shard run reserves its quote from the caps when it starts.
        dry_run: quote and pre-flight only; start no shard.

    Returns:
        What was found, skipped, edited and failed, per shard and in total, and what it cost.

    Example:
        ```python
        report = await edit_sharded("my-wallet", "s3://b/out/", "make it snow", source_prefix="s3://b/in/")
        ```
    """
    logger = get_run_logger()
    fs_options = dict(storage_options or {})
    wanted = await job_items(source_prefix, items, options.output_format, fs_options)
    done = await asyncio.to_thread(_list_relative, destination, fs_options)
    inputs = source_prefix if source_prefix is not None else [i.model_dump(mode="json") for i in wanted]
    job_key = shard_digest(
        {"wallet": wallet_block, "inputs": inputs, "destination": destination, "prompt": prompt,
         "options": options.request_params(), "user_key": idempotency_key}
    )
    plan = plan_shards(wanted, done, shards=shards, job_key=job_key)
    skipped = sum(s.done for s in plan)
    report = ShardedReport(found=len(wanted), skipped=skipped, shards=shards)
    logger.info(
        "%d images: %d already done, %d to edit in %d shards",
        len(wanted), skipped, len(wanted) - skipped, sum(1 for s in plan if s.items),
    )
    todo = [item for s in plan for item in s.items]
    if todo and (preflight or dry_run):
        await preflight_job(
            wallet_block, todo, prompt, options, storage_options=storage_options, user_key=idempotency_key,
            intent_store_url=intent_store_url or join_uri(destination, INTENTS_FOLDER),
            prefix="stablestudio-sharded",
        )
    if dry_run:
        return report
    if todo:
        await _check_deployment(shard_deployment)
    records_url = join_uri(destination, SHARDS_FOLDER)
    parameters: dict[str, Any] = {
        "wallet_block": wallet_block, "destination": destination, "prompt": prompt,
        "options": options.model_dump(mode="json"), "max_concurrency": max_concurrency,
        "storage_options": storage_options, "idempotency_key": idempotency_key,
        "intent_store_url": intent_store_url or join_uri(destination, INTENTS_FOLDER),
        "expected_job_seconds": expected_job_seconds, "fail_on_error": False,
        # The job was checked as a whole above: a shard refused by its own pre-flight would leave no record
        # and be started again, pointlessly. Its per-run cap still refuses each payment that would break it.
        "preflight": False, "reserve_upfront": reserve_upfront,
    }
    results = await asyncio.gather(
        *(
            _run_shard(
                s, deployment=shard_deployment, parameters=parameters, records_url=records_url,
                options=fs_options, poll_seconds=poll_seconds, max_wait_seconds=max_wait_seconds,
                attempts=shard_attempts,
            )
            for s in plan
        )
    )
    for seen, outcomes in results:
        report.shard_runs.append(seen)
        report.outcomes.extend(outcomes)
        report.spent_usd += seen.spent_usd
        if seen.state == "SKIPPED":
            report.shards_skipped += 1
        elif not outcomes:
            report.missing += seen.edits
    report.edited = sum(1 for o in report.outcomes if o.ok)
    report.failed = len(report.outcomes) - report.edited
    await run_table_artifact(report.outcomes, prefix="stablestudio-sharded")
    await _spend_summary(report, wallet_block)
    logger.info(
        "%d edited, %d failed, %d unreported, %d shards skipped; spent $%s",
        report.edited, report.failed, report.missing, report.shards_skipped, report.spent_usd,
    )
    if fail_on_error and (report.failed or report.missing):
        raise ShardedJobFailed(report)
    return report


def _remaining_text(atomic: int | None) -> str:
    return "-" if atomic is None else usd_from_atomic(atomic)


async def _spend_summary(report: ShardedReport, wallet_block: str) -> None:
    """One markdown artifact: the job's totals, each shard's share, and what remains under each cap."""
    try:
        wallet = await load_wallet(wallet_block)
        remaining = {str(k): v for k, v in (await wallet.budget().remaining()).items()}
        caps = {str(k): v for k, v in wallet.caps().items()}
        lines = [
            "# StableStudio sharded job",
            "",
            f"**{report.edited} edited, {report.failed} failed, {report.missing} unreported; "
            f"{report.skipped} of {report.found} already done.** Spent by this job run: "
            f"**{usd_from_dollars(report.spent_usd)}** (wallet `{wallet.public_address}`).",
            "",
            "| shard | run | state | worker | edits | saved | failed | already done | spent |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *(
                f"| {s.index} | `{s.flow_run_id or '-'}` | {s.state} | {s.worker or '-'} | {s.edits} "
                f"| {s.saved} | {s.failed} | {s.already_done} | {usd_from_dollars(s.spent_usd)} |"
                for s in report.shard_runs
            ),
            "",
            "| cap | limit | remaining |",
            "| --- | --- | --- |",
            *(
                f"| {n} | {usd_cap_from_atomic(c)} | {_remaining_text(remaining.get(n)) if c else '-'} |"
                for n, c in caps.items()
            ),
        ]
        await acreate_markdown_artifact(
            "\n".join(lines), key=artifact_key("stablestudio-sharded", "summary"), description="Sharded job"
        )
    except Exception as exc:  # reporting never fails a run
        get_run_logger().warning("sharded job summary not created: %s", exc)
