"""The scheduled pipeline: edit every new image under a prefix (S3 or any fsspec URL) into another prefix.

Run on a schedule, it lists the source prefix, drops the images whose result already exists under the
destination, and hands the rest to `edit_images` as one batch. "Already done" means: the output file
`<destination>/<same sub-folders>/<stem>-edited.<format>` exists. That costs one listing of each prefix per
run, reads no image and pays nothing, so a rerun over a finished prefix is free. It is deliberately a name
check, not a content check: replacing a source image in place does not trigger a new edit (delete the
output to redo it). Edits that were paid but never saved (a crash mid-run) are still found by the payment
intents, which live next to the results by default so that any worker that can write the results can resume
them without paying again.

Example:
    ```python
    from prefect_stablestudio.flows.pipelines import edit_new_images

    report = await edit_new_images(
        "my-wallet", "s3://photos/incoming/", "s3://photos/edited/", prompt="remove the background"
    )
    print(report.edited, report.skipped)
    ```
"""

from __future__ import annotations

import asyncio
import posixpath
from decimal import Decimal
from typing import Annotated, Any

from fsspec.core import url_to_fs
from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field

from prefect_stablestudio.flows.edit import edit_images
from prefect_stablestudio.flows.models import EditItem, EditOptions
from prefect_stablestudio.flows.storage import StorageOptions, join_uri

__all__ = [
    "IMAGE_SUFFIXES",
    "INTENTS_FOLDER",
    "PipelineReport",
    "edit_new_images",
    "output_name",
    "plan_new_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
INTENTS_FOLDER = ".stablestudio-intents"
_EDITED = "-edited"


class PipelineReport(BaseModel):
    """What one pipeline run found and did."""

    found: int = Field(description="Images under the source prefix.")
    skipped: int = Field(description="Images whose result already existed (nothing read, nothing paid).")
    edited: int = Field(default=0, description="Results saved by this run.")
    failed: int = Field(default=0, description="New images whose edit did not produce a result.")
    deferred: int = Field(default=0, description="New images left for a later run by max_images.")
    spent_usd: Decimal = Field(default=Decimal(0), description="Money this run moved.")
    outputs: list[str] = Field(default_factory=list, description="Results saved by this run.")


def _suffix(name: str) -> str:
    return posixpath.splitext(name)[1].lower()


def _url(protocol: str | tuple[str, ...], path: str) -> str:
    scheme = protocol if isinstance(protocol, str) else protocol[0]
    return path if scheme in ("file", "local") else f"{scheme}://{path}"


def _fresh(prefix: str, options: StorageOptions) -> tuple[Any, str]:
    fs, root = url_to_fs(prefix, **options)
    # fsspec shares one filesystem instance per process and s3fs caches listings in it: a long-lived worker
    # would otherwise never see images that arrived after its first run (nor could it read them).
    fs.invalidate_cache()
    return fs, root.rstrip("/")


def _list_images(prefix: str, options: StorageOptions) -> list[tuple[str, str]]:
    """(URL, path relative to the prefix) of every image under `prefix`, sorted."""
    fs, root = _fresh(prefix, options)
    if not fs.exists(root):
        return []
    found = []
    for path in fs.find(root):
        relative = path[len(root) :].lstrip("/")
        # Results of an earlier run written into the source itself must never be edited again.
        if _suffix(path) in IMAGE_SUFFIXES and not posixpath.splitext(relative)[0].endswith(_EDITED):
            found.append((_url(fs.protocol, path), relative))
    return sorted(found)


def _list_relative(prefix: str, options: StorageOptions) -> set[str]:
    fs, root = _fresh(prefix, options)
    if not fs.exists(root):
        return set()
    return {path[len(root) :].lstrip("/") for path in fs.find(root)}


def output_name(relative: str, output_format: str) -> str:
    """The result's path under the destination: same sub-folders, `<stem>-edited.<format>`.

    Example:
        >>> output_name("2026/cat.jpeg", "png")
        '2026/cat-edited.png'
    """
    folder, name = posixpath.split(relative)
    stem = posixpath.splitext(name)[0]
    return posixpath.join(folder, f"{stem}{_EDITED}.{output_format}")


async def plan_new_images(
    source_prefix: str,
    destination_prefix: str,
    output_format: str,
    storage_options: StorageOptions | None = None,
) -> tuple[list[EditItem], int]:
    """The edits still to do under `source_prefix` and the number of images found.

    Example:
        ```python
        todo, found = await plan_new_images("s3://photos/in/", "s3://photos/out/", "png")
        ```
    """
    options = dict(storage_options or {})
    images, done = await asyncio.gather(
        asyncio.to_thread(_list_images, source_prefix, options),
        asyncio.to_thread(_list_relative, destination_prefix, options),
    )
    todo = [
        EditItem(images=[url], output_name=output_name(relative, output_format))
        for url, relative in images
        if output_name(relative, output_format) not in done
    ]
    return todo, len(images)


@flow(name="edit-new-images")
async def edit_new_images(
    wallet_block: Annotated[str, Field(description="Name of a saved StableStudio Wallet block.")],
    source_prefix: Annotated[str, Field(description="Folder of images to edit: s3://bucket/in/ or a path.")],
    destination_prefix: Annotated[str, Field(description="Folder for results: s3://bucket/out/ or a path.")],
    prompt: Annotated[str, Field(min_length=1, max_length=10_000, description="What to change.")],
    options: EditOptions = EditOptions(),  # noqa: B008 - a frozen model: sharing the default is safe
    max_images: Annotated[int, Field(ge=1, description="Most images edited per run; the rest wait.")] = 100,
    max_concurrency: Annotated[int, Field(ge=1, le=64, description="Edits in flight at once.")] = 4,
    storage_options: dict[str, Any] | None = None,
    intent_store_url: str | None = None,
    fail_on_error: bool = True,
    preflight: Annotated[
        bool, Field(description="Quote the batch and fail before paying if a cap or the balance is short.")
    ] = True,
    reserve_upfront: Annotated[
        bool, Field(description="Reserve the whole quote from the caps at the start; give back the rest.")
    ] = False,
    dry_run: Annotated[bool, Field(description="Quote and pre-flight only: pay nothing.")] = False,
) -> PipelineReport:
    """Edit every image under `source_prefix` that has no result under `destination_prefix` yet.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block.
        source_prefix: where new images arrive (local path or fsspec URL); sub-folders included.
        destination_prefix: where results go, mirroring the source's sub-folders.
        prompt: the edit applied to every image.
        options: aspect ratio, resolution, format, quality, safety, seed.
        max_images: most images edited per run (a budget guard for a prefix that suddenly fills up).
        max_concurrency: edits in flight at once.
        storage_options: fsspec options for both prefixes (e.g. a custom S3 endpoint).
        intent_store_url: where payment intents live; default `<destination_prefix>/.stablestudio-intents`.
        fail_on_error: end the run Failed when an edit failed (successes are kept either way).
        preflight: before the first payment, quote the images found (the `-quote` artifact) and fail if a cap
            or the wallet's balance is short (as `edit_images`).
        reserve_upfront: reserve the whole quote from the caps at the start; what is left goes back later.
        dry_run: quote and pre-flight only; pay nothing.

    Returns:
        What was found, skipped, edited, failed or deferred, and what it cost.

    Example:
        ```python
        report = await edit_new_images("my-wallet", "s3://b/in/", "s3://b/out/", prompt="make it snow")
        ```
    """
    logger = get_run_logger()
    todo, found = await plan_new_images(
        source_prefix, destination_prefix, options.output_format, storage_options
    )
    report = PipelineReport(found=found, skipped=found - len(todo))
    batch, report.deferred = todo[:max_images], max(0, len(todo) - max_images)
    logger.info(
        "%d images under %s: %d already done, %d to edit now, %d deferred",
        found,
        source_prefix,
        report.skipped,
        len(batch),
        report.deferred,
    )
    if batch:
        result = await edit_images(
            wallet_block=wallet_block,
            items=batch,
            destination=destination_prefix,
            prompt=prompt,
            options=options,
            max_concurrency=max_concurrency,
            storage_options=storage_options,
            intent_store_url=intent_store_url or join_uri(destination_prefix, INTENTS_FOLDER),
            fail_on_error=fail_on_error,
            preflight=preflight,
            reserve_upfront=reserve_upfront,
            dry_run=dry_run,
        )
        report.edited, report.failed = len(result.succeeded), len(result.failed)
        report.spent_usd = result.spent_usd
        report.outputs = [o.output_uri for o in result.succeeded if o.output_uri]
    await _report_artifact(report, source_prefix, destination_prefix)
    return report


async def _report_artifact(report: PipelineReport, source: str, destination: str) -> None:
    """A markdown artifact on the pipeline's own run (the per-edit artifacts hang off the batch subflow)."""
    lines = [
        "# StableStudio pipeline",
        "",
        f"`{source}` -> `{destination}`",
        "",
        "| found | already done | edited | failed | deferred | spent |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {report.found} | {report.skipped} | {report.edited} | {report.failed} | {report.deferred} "
        f"| ${report.spent_usd} |",
    ]
    try:
        await acreate_markdown_artifact(
            "\n".join(lines), key="stablestudio-pipeline", description="Pipeline run"
        )
    except Exception as exc:  # reporting never fails a run
        get_run_logger().warning("pipeline artifact not created: %s", exc)
