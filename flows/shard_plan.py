"""The pieces of a sharded job that hold no Prefect run: models, the shard plan, the shard records.

Example:
    ```python
    from prefect_stablestudio.flows.shard_plan import plan_shards

    plan = plan_shards(items, done={"cat-edited.png"}, shards=4, job_key="...")
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
from decimal import Decimal
from typing import Any

from fsspec.core import url_to_fs
from pydantic import BaseModel, Field

from prefect_stablestudio.flows.models import EditItem, EditOutcome
from prefect_stablestudio.flows.pipelines import _list_images, output_name
from prefect_stablestudio.flows.storage import StorageOptions

__all__ = [
    "Shard",
    "ShardRecord",
    "ShardRun",
    "ShardedJobFailed",
    "ShardedReport",
    "job_items",
    "plan_shards",
    "read_record",
    "shard_digest",
    "write_record",
]


class Shard(BaseModel):
    """A slice of a job: its place, its stable key, and the edits still to do in it."""

    index: int
    key: str = Field(description="Stable across runs of the same job: names its runs.")
    items: list[EditItem] = Field(description="Edits still to do (results not yet saved).")
    done: int = Field(default=0, description="Images of this shard whose result already exists.")


class ShardRecord(BaseModel):
    """What a shard run did, written next to the results for the parent to aggregate."""

    shard_key: str
    flow_run_id: str
    worker: str = Field(description="host:pid of the process that ran the edits.")
    outcomes: list[EditOutcome]
    spent_usd: Decimal


class ShardRun(BaseModel):
    """One shard as the parent saw it."""

    index: int
    key: str
    flow_run_id: str | None = None
    state: str = Field(description="Final state of the shard run, or SKIPPED when all was done.")
    worker: str | None = None
    edits: int = 0
    saved: int = 0
    failed: int = 0
    already_done: int = 0
    spent_usd: Decimal = Decimal(0)


class ShardedReport(BaseModel):
    """What one sharded job run found and did."""

    found: int = Field(description="Images in the job.")
    skipped: int = Field(description="Images whose result already existed (nothing read, nothing paid).")
    shards: int = Field(description="Shards the job is cut into.")
    shards_skipped: int = Field(default=0, description="Shards with nothing left to do: no run started.")
    edited: int = 0
    failed: int = Field(default=0, description="Edits without a saved result (refused, failed, unknown).")
    missing: int = Field(default=0, description="Edits of shard runs that reported nothing (crashed).")
    spent_usd: Decimal = Field(default=Decimal(0), description="Money moved by this job run.")
    outcomes: list[EditOutcome] = Field(default_factory=list)
    shard_runs: list[ShardRun] = Field(default_factory=list)


class ShardedJobFailed(RuntimeError):
    """Some edits of a sharded job have no saved result; `report` holds every outcome."""

    def __init__(self, report: ShardedReport) -> None:
        super().__init__(
            f"{report.failed} edits failed and {report.missing} went unreported "
            f"of {report.found - report.skipped} to do"
        )
        self.report = report


def shard_digest(value: Any) -> str:
    """sha256 of a JSON value (keys sorted): the same job gives the same key on every run and machine."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def plan_shards(
    items: list[EditItem], done: set[str], *, shards: int, job_key: str
) -> list[Shard]:
    """Cut `items` into `shards` shards; an item's shard depends only on its first image's URI.

    A hash (not a position) picks the shard so that an image stays in its shard when others arrive or
    finish: a rerun while a shard run is still going finds that run by the shard's key and waits for it.

    Args:
        items: the edits, each with its `output_name` set.
        done: output names (relative to the destination) that already exist.
        shards: how many shards.
        job_key: what identifies the job (wallet, inputs, destination, prompt, options).

    Example:
        >>> items = [EditItem(images=[f"in/{i}.png"], output_name=f"{i}-edited.png") for i in range(4)]
        >>> plan = plan_shards(items, {"0-edited.png"}, shards=2, job_key="k")
        >>> sum(len(s.items) for s in plan), sum(s.done for s in plan)
        (3, 1)
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    plan = [
        Shard(index=i, key=shard_digest({"job": job_key, "shard": i, "of": shards})[:32], items=[])
        for i in range(shards)
    ]
    for item in items:
        shard = plan[int(hashlib.sha256(item.images[0].encode("utf-8")).hexdigest(), 16) % shards]
        if item.output_name in done:
            shard.done += 1
        else:
            shard.items.append(item)
    return plan


def _with_output_name(item: EditItem, output_format: str) -> EditItem:
    if item.output_name:
        return item
    name = posixpath.basename(item.images[0].split("?", 1)[0]) or "image"
    return item.model_copy(update={"output_name": output_name(name, output_format)})


async def job_items(
    source_prefix: str | None, items: list[EditItem] | None, output_format: str, options: StorageOptions
) -> list[EditItem]:
    """The job's edits, each with its output name: the images under a prefix, or the given list."""
    if (source_prefix is None) == (items is None):
        raise ValueError("give either source_prefix or items")
    if source_prefix is not None:
        found = await asyncio.to_thread(_list_images, source_prefix, options)
        return [EditItem(images=[url], output_name=output_name(rel, output_format)) for url, rel in found]
    return [_with_output_name(item, output_format) for item in items or []]


def _record_path(records_url: str, flow_run_id: str) -> str:
    return f"{records_url.rstrip('/')}/{flow_run_id}.json"


def write_record(records_url: str, record: ShardRecord, options: StorageOptions) -> None:
    """Write a shard run's record as `<records_url>/<flow run id>.json` (blocking: run it in a thread)."""
    fs, path = url_to_fs(_record_path(records_url, record.flow_run_id), **options)
    if "file" in fs.protocol or "local" in fs.protocol:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, record.model_dump_json().encode("utf-8"))


def read_record(records_url: str, flow_run_id: str, options: StorageOptions) -> ShardRecord | None:
    """The record of a shard run, or None when it wrote none (blocking: run it in a thread)."""
    fs, path = url_to_fs(_record_path(records_url, flow_run_id), **options)
    try:
        return ShardRecord.model_validate_json(fs.cat_file(path))
    except FileNotFoundError:
        return None
