"""`edit_images` spread over a task runner's workers (Dask, Ray, processes): one task per chunk of items.

`edit_images` awaits its tasks one edit at a time on the flow's event loop, so it runs unchanged under any
task runner, but the runner never sees those tasks: under a `DaskTaskRunner` every edit still runs in the
flow's process. To put the edits on the cluster, `edit_images_chunked` cuts the items into chunks and
submits one `edit_chunk` task per chunk; each task runs `edit_images` itself (a nested flow run) wherever
the runner puts it. Everything that crosses to a worker is plain data (block name, `EditItem`s,
`EditOptions`, URIs) and so is what comes back (`ChunkResult`): both pickle. HTTP clients are made inside
the tasks, and the budget is the wallet's caps on Prefect's server, so any number of Dask workers share it.

Example:
    ```python
    from prefect_dask import DaskTaskRunner  # pip install "prefect-stablestudio[dask]"
    from prefect_stablestudio.flows.chunked import edit_images_chunked

    runner = DaskTaskRunner(address="tcp://scheduler:8786")
    result = edit_images_chunked.with_options(task_runner=runner)(
        "my-wallet", items, "s3://photos/edited/", prompt="make it snow", chunks=8,
        intent_store_url="s3://photos/edited/.stablestudio-intents",
    )
    ```
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from typing import Annotated, Any, cast

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import BaseModel, Field

from prefect_stablestudio.flows.errors import EditBatchFailed
from prefect_stablestudio.flows.models import BatchResult, EditItem, EditOptions, EditOutcome
from prefect_stablestudio.flows.preflight import preflight_job

__all__ = ["ChunkResult", "ChunkedResult", "edit_chunk", "edit_images_chunked", "split"]


class ChunkResult(BaseModel):
    """What one chunk did, and where it ran."""

    worker: str = Field(description="host:pid of the process that ran the chunk.")
    outcomes: list[EditOutcome]
    spent_usd: Decimal


class ChunkedResult(BatchResult):
    """A batch's outcomes, and the processes its chunks ran in."""

    workers: list[str] = Field(default_factory=list, description="host:pid per chunk, in chunk order.")


def split(items: list[EditItem], chunks: int) -> list[list[EditItem]]:
    """`items` in at most `chunks` contiguous, near-equal, non-empty slices.

    Example:
        >>> [len(c) for c in split([EditItem(images=[str(i)]) for i in range(5)], 2)]
        [3, 2]
    """
    if chunks < 1:
        raise ValueError("chunks must be at least 1")
    size, extra = divmod(len(items), chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + size + (1 if i < extra else 0)
        if end > start:
            out.append(items[start:end])
        start = end
    return out


# Never cached and never retried: edit_images reconciles with the intent store itself, and a cached chunk
# would hide new failures.
@task(name="edit-chunk", cache_policy=NO_CACHE)
async def edit_chunk(
    wallet_block: str, items: list[EditItem], destination: str, **kwargs: Any
) -> ChunkResult:
    """Run `edit_images` over one chunk (in whatever process the task runner chose); never raises for edits.

    Example:
        ```python
        future = edit_chunk.submit("my-wallet", chunk, "s3://edits/", prompt="snow", intent_store_url=url)
        ```
    """
    # Imported here, not used from this module's globals: a task crosses to a Dask worker by cloudpickle,
    # which pickles the task's function BY VALUE (the module attribute of that name is the Task, not the
    # function) together with the globals its code names. A Flow reached that way arrives pickled by value
    # too, with none of the names its string annotations need (`EditItem`): its parameter validation then
    # fails in the worker. Importing in the worker gives the real module's flow.
    from prefect_stablestudio.flows.edit import edit_images

    result = await edit_images(
        wallet_block=wallet_block, items=items, destination=destination, fail_on_error=False, **kwargs
    )
    return ChunkResult(
        worker=f"{socket.gethostname()}:{os.getpid()}", outcomes=result.outcomes, spent_usd=result.spent_usd
    )


@flow(name="edit-images-chunked")
def edit_images_chunked(
    wallet_block: str,
    items: list[EditItem],
    destination: Annotated[str, Field(description="Folder for the results: a local path or fsspec URL.")],
    prompt: Annotated[str | None, Field(max_length=10_000, description="Default prompt.")] = None,
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    chunks: Annotated[int, Field(ge=1, le=1000, description="Tasks the items are cut into.")] = 4,
    max_concurrency: Annotated[int, Field(ge=1, le=64, description="Edits in flight per chunk.")] = 16,
    storage_options: dict[str, Any] | None = None,
    intent_store_url: str | None = None,
    expected_job_seconds: float = 5.0,
    fail_on_error: bool = True,
    preflight: bool = True,
    reserve_upfront: bool = False,
    dry_run: bool = False,
) -> ChunkedResult:
    """`edit_images` over chunks submitted to the flow's task runner; one result for all of them.

    Give `intent_store_url` on storage every worker reaches (e.g. s3://...): the default lives under each
    worker's PREFECT_HOME, and a rerun landing on another machine would not find the earlier payments.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block.
        items: the edits.
        destination: folder (local or fsspec URL, reachable by every worker) where results are written.
        prompt: prompt for items that have none.
        options: aspect ratio, resolution, format, quality, safety, seed.
        chunks: how many tasks the items are cut into (about one or two per worker).
        max_concurrency: edits in flight in each chunk.
        storage_options: fsspec options for inputs, outputs and the intent store.
        intent_store_url: the shared intent store.
        expected_job_seconds: typical job duration (the first poll comes near it).
        fail_on_error: raise `EditBatchFailed` (with the result) when an edit failed.
        preflight: quote all items first and fail before any chunk starts if the shared caps (24 h,
            lifetime) or the balance are short (the chunks' runs do not check again).
        reserve_upfront: each chunk's run reserves its quote from the caps when it starts.
        dry_run: quote and pre-flight only; submit no chunk.

    Example:
        ```python
        result = edit_images_chunked.with_options(task_runner=DaskTaskRunner())(
            "my-wallet", items, "/data/edited", prompt="make it snow", intent_store_url="/data/intents"
        )
        ```
    """
    if items and (preflight or dry_run):
        run_coro_as_sync(preflight_job(
            wallet_block, [EditItem.model_validate(i) for i in items], prompt, options,
            intent_store_url=intent_store_url, storage_options=storage_options, user_key=None,
            prefix="stablestudio-chunked",
        ))
    if dry_run:
        return ChunkedResult(outcomes=[], spent_usd=Decimal(0), workers=[])
    shared = {
        "prompt": prompt, "options": options, "max_concurrency": max_concurrency,
        "storage_options": storage_options, "intent_store_url": intent_store_url,
        # Checked as a whole above; each chunk's per-run cap still refuses each payment that would break it.
        "expected_job_seconds": expected_job_seconds, "preflight": False,
        "reserve_upfront": reserve_upfront,
    }
    futures = [
        edit_chunk.submit(wallet_block, chunk, destination, **shared) for chunk in split(list(items), chunks)
    ]
    # An async task's future resolves to its return value; the stubs type it as the coroutine.
    done = [cast(ChunkResult, future.result()) for future in futures]
    result = ChunkedResult(
        outcomes=[o for chunk in done for o in chunk.outcomes],
        spent_usd=sum((chunk.spent_usd for chunk in done), Decimal(0)),
        workers=[chunk.worker for chunk in done],
    )
    if fail_on_error and result.failed:
        raise EditBatchFailed(result)
    return result
