"""Run the `edit_images` flow from the terminal with a progress bar, and print what it did.

The bar counts results as they land in the destination (each edit has a known output name), so it needs
nothing from inside the flow and works the same for local folders and S3.

Example:
    ```python
    from prefect_stablestudio.editing import run_edits

    run = await run_edits("my-wallet", ["cat.png"], "make it snow", "out/", options)
    print(run.flow_run_id, run.result.spent_usd)
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from prefect_stablestudio.console import console

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from prefect_stablestudio.flows.models import BatchResult, EditItem, EditOptions

__all__ = ["EditRun", "outcome_table", "plan_items", "run_edits"]

_POLL_SECONDS = 0.25
T = TypeVar("T")


@dataclass
class EditRun:
    """A finished `edit_images` run: its id (to find it in the UI) and every outcome."""

    flow_run_id: str | None
    result: BatchResult


def plan_items(images: list[str], output_format: str) -> list[EditItem]:
    """One item per image with a distinct output name (`<stem>-edited.<format>`, numbered on a clash)."""
    from prefect_stablestudio.flows.models import EditItem

    items: list[EditItem] = []
    seen: set[str] = set()
    for image in images:
        stem = PurePosixPath(image.split("?", 1)[0].replace("\\", "/")).stem or "image"
        name, n = f"{stem}-edited.{output_format}", 1
        while name in seen:
            n += 1
            name = f"{stem}-edited-{n}.{output_format}"
        seen.add(name)
        items.append(EditItem(images=[image], output_name=name))
    return items


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _exists(uri: str, storage_options: dict[str, Any]) -> bool:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(uri, **storage_options)
    fs.invalidate_cache()
    return bool(fs.exists(path))


async def _count_done(targets: list[str], storage_options: dict[str, Any]) -> int:
    found = await asyncio.gather(*(asyncio.to_thread(_exists, t, storage_options) for t in targets))
    return sum(found)


async def run_edits(
    wallet_block: str,
    images: list[str],
    prompt: str,
    destination: str,
    options: EditOptions,
    *,
    storage_options: dict[str, Any] | None = None,
    max_concurrency: int = 4,
    label: str = "Editing",
) -> EditRun:
    """Run `edit_images` in this process with a live progress bar; never raises for failed edits."""
    from prefect_stablestudio.flows.edit import edit_images
    from prefect_stablestudio.flows.storage import join_uri

    items = plan_items(images, options.output_format)
    targets = [join_uri(destination, item.output_name or "") for item in items]
    options_ = dict(storage_options or {})
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"{label} {len(items)} image(s)", total=len(items))
        flow_run: asyncio.Task[State[BatchResult]] = asyncio.create_task(
            _as_coroutine(
                edit_images(
                    wallet_block=wallet_block,
                    items=items,
                    destination=destination,
                    prompt=prompt,
                    options=options,
                    max_concurrency=max_concurrency,
                    storage_options=storage_options,
                    fail_on_error=False,
                    return_state=True,
                )
            )
        )
        while not flow_run.done():
            with contextlib.suppress(
                Exception
            ):  # the bar is a courtesy: a failed check must not stop the run
                progress.update(bar, completed=await _count_done(targets, options_))
            await asyncio.wait({flow_run}, timeout=_POLL_SECONDS)
        state = flow_run.result()
        result: BatchResult = await state.aresult()
        progress.update(bar, completed=len(items), description=f"{label}: done")
    run_id = state.state_details.flow_run_id
    return EditRun(flow_run_id=str(run_id) if run_id else None, result=result)


def outcome_table(result: BatchResult) -> Table:
    """One row per edit: input, status, output or error, cost, job id."""
    table = Table(show_edge=False, header_style="bold")
    for column in ("input", "status", "result", "cost", "job"):
        table.add_column(column, overflow="fold")
    for outcome in result.outcomes:
        colour = "green" if outcome.ok else "red"
        table.add_row(
            outcome.images[0],
            f"[{colour}]{outcome.status}[/]",
            outcome.output_uri or (outcome.error or ""),
            f"${outcome.cost_usd}" + ("" if outcome.paid_now or not outcome.ok else " (paid earlier)"),
            outcome.job_id or "-",
        )
    return table
