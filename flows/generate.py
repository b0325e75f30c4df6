"""Any StableStudio model from Prefect: `generate` (one image or video) with a model choice.

Params are checked against the registry, the inputs read and the idempotency key made here; the rest is the
one paid-job procedure the edits run too (`flows/paid_job.py`: record -> quote -> upload -> pay -> poll
-> save -> complete), with the same failure handling. `edit_image` / `edit_images` stay the Flux 2 Pro edit
flows.

Example:
    ```python
    from prefect_stablestudio.flows.generate import generate

    outcome = await generate(
        "my-wallet", prompt="waves at dusk", destination="s3://renders/",
        model="seedance", operation="t2v", params={"output_resolution": "480p"},
    )
    print(outcome.output_uri, outcome.thumbnail_uri, outcome.cost_usd)
    ```
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote
from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.blocks.budget import current_flow_run_id, release_run_budget
from prefect_stablestudio.client.catalog import CatalogEntry, MediaKind, catalog_entry
from prefect_stablestudio.client.media_types import content_type_for, extension_for
from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.intents import IntentStore, intent_key
from prefect_stablestudio.flows.paid_job import JobRunner, JobSpec, JobTally, OutputName
from prefect_stablestudio.flows.receipts import ReceiptBook
from prefect_stablestudio.flows.steps import load_wallet
from prefect_stablestudio.flows.storage import read_input

# Tasks `save_media`, `submit_generation`: flows/tasks.py; `extension_for`: client/media_types.py.
__all__ = ["GenerationOutcome", "extension_for", "generate", "generate_job"]

_RUN_HOOKS: list[Any] = [release_run_budget]
_PLACEHOLDER_URL = "https://placeholder.invalid/input.png"


class GenerationOutcome(BaseModel):
    """One generation: what was asked, what it cost, where the result (and a video's thumbnail) went."""

    model_config = ConfigDict(frozen=True)

    model: str
    operation: str
    media: MediaKind
    job_id: str
    idempotency_key: str
    cost_usd: Decimal = Field(description="The price quoted by StableStudio and paid for the job.")
    upload_cost_usd: Decimal = Decimal(0)
    paid_now: bool
    transaction: str | None = None
    output_uri: str
    sha256: str
    content_type: str
    thumbnail_uri: str | None = Field(
        default=None, description="A video's thumbnail; None for images and for a result reused from a rerun."
    )


def _check_params(entry: CatalogEntry, prompt: str, params: dict[str, Any], n_images: int) -> None:
    """Validate before anything is read, uploaded or paid (input images stand in as placeholder URLs)."""
    placeholders = [_PLACEHOLDER_URL] * n_images
    entry.build(entry.with_images({**params, "prompt": prompt}, placeholders))


@task(name="generate-job", task_run_name="Generate {label}", cache_policy=NO_CACHE)
async def generate_job(runner: JobRunner, job: JobSpec, label: str) -> JobTally:
    """The paid job of a `generate` run, as one task run (never retried: the job retries itself)."""
    tally = JobTally()
    async with steps.one_client_for_steps(runner.wallet, ReceiptBook.beside(runner.store)) as clients:
        await runner.run(clients, job, tally)
    return tally


@flow(
    name="generate",
    on_completion=_RUN_HOOKS, on_failure=_RUN_HOOKS, on_cancellation=_RUN_HOOKS, on_crashed=_RUN_HOOKS,
)
async def generate(
    wallet_block: str,
    prompt: Annotated[str, Field(min_length=1, max_length=10_000, description="What to make.")],
    destination: Annotated[str, Field(description="Folder for the result: a local path or fsspec URL.")],
    model: str = "flux-2-pro",
    operation: str = "generate",
    params: dict[str, Any] | None = None,
    images: list[str] | None = None,
    output_name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    intent_store_url: str | None = None,
    max_wait_seconds: float | None = None,
    expected_job_seconds: float | None = None,
    max_result_bytes: int | None = None,
    preflight: Annotated[
        bool, Field(description="Quote first and fail before paying if a cap or the balance is short.")
    ] = True,
) -> GenerationOutcome:
    """Generate one image or video with any catalogued model, paying the quoted price once.

    Args:
        wallet_block: name of a saved `StableStudioWallet` block.
        prompt: the prompt.
        destination: folder for the result; a video's thumbnail is saved beside it as ``<name>-thumbnail``.
        model, operation: a route of `prefect_stablestudio.client.catalog.CATALOG`, e.g.
            ``("nano-banana-pro", "generate")``, ``("veo-3.1", "generate")``, ``("seedance", "i2v")``.
        params: the model's parameters, Python or wire names (``aspect_ratio`` or ``aspectRatio``); checked
            against the registry before anything is paid.
        images: input images (paths or fsspec URLs) for edit / image-to-video routes; uploaded ($0.01 each).
        output_name: file name without extension; default ``<model>-<operation>-<job id>``.
        storage_options: fsspec options for inputs and destination.
        idempotency_key: ask deliberately for a second, paid, generation of the same inputs.
        intent_store_url: where payment intents live (default under PREFECT_HOME).
        max_wait_seconds, expected_job_seconds: poll deadline and typical turnaround; default the registry's
            (videos: minutes).
        max_result_bytes: the most the result may weigh; default the wallet's limit for its media (64 MiB
            for an image, 2 GiB for a video). A larger one stops the download with `ResultTooLarge`.
        preflight: before paying, quote the uploads and the call (the `generate-quote` artifact) and raise
            `PreflightRefused` if a cap or the balance is short (see `edit_images`).

    Raises:
        InvalidRequest: unknown route or invalid params (nothing paid).
    """
    entry = catalog_entry(model, operation)
    params = dict(params or {})
    _check_params(entry, prompt, params, len(images or []))
    wallet = await load_wallet(wallet_block)
    budget = await wallet.ensure_budget_limits(current_flow_run_id())
    store = IntentStore(intent_store_url, storage_options)
    inputs = [await read_input(uri, storage_options) for uri in images or []]
    key = intent_key(
        f"{model}/{operation}",
        wallet.public_address,
        inputs=[(i.uri, i.sha256) for i in inputs],
        params={"prompt": prompt, **params},
        user_key=idempotency_key,
    )
    job = JobSpec(
        model=model, operation=operation,
        body=lambda urls: entry.build(entry.with_images({**params, "prompt": prompt}, urls)).body(),
        inputs=inputs, key=key, output=OutputName(destination, stem=output_name),
        label=f"{model}/{operation}",
        media=entry.media, preflight=preflight,
        expected_seconds=expected_job_seconds or entry.expected_seconds,
        max_wait_seconds=max_wait_seconds or entry.max_wait_seconds,
    )
    runner = JobRunner(
        wallet, store, storage_options=storage_options, budget=budget, max_result_bytes=max_result_bytes
    )
    tally = await generate_job(cast(Any, quote(runner)), cast(Any, quote(job)), job.label)
    assert tally.job_id is not None and tally.output_uri is not None and tally.sha256 is not None
    if not tally.reused:
        get_run_logger().info("%s/%s saved to %s", model, operation, tally.output_uri)
    return GenerationOutcome(
        model=model, operation=operation, media=entry.media, job_id=tally.job_id, idempotency_key=key,
        cost_usd=dollars_from_atomic(tally.cost), upload_cost_usd=dollars_from_atomic(tally.upload_cost),
        paid_now=tally.paid_now,
        transaction=tally.transaction, output_uri=tally.output_uri, sha256=tally.sha256,
        content_type=tally.content_type or content_type_for(b"", tally.output_uri),
        thumbnail_uri=tally.thumbnail_uri,
    )
