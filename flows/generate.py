"""Any StableStudio model from Prefect: `generate` (one image or video) with a model choice.

The same picture as the edit flow, for every route of `prefect_stablestudio.client.catalog`:

    params checked against the registry -> read inputs -> idempotency key -> reconcile with the intent store
    -> upload inputs (paid) -> submit (paid at the quoted price, caps reserved before signing, payment
    persisted before sending) -> job id persisted -> poll (video: minutes) -> download at once -> write
    (extension from the content type) -> intent complete

`edit_image` / `edit_images` stay the Flux 2 Pro edit flows; this module reuses their tasks (`upload_image`,
`wait_for_job`) and their intent store.

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

import mimetypes
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.blocks.budget import current_flow_run_id, release_run_budget
from prefect_stablestudio.client.catalog import CatalogEntry, MediaKind, catalog_entry
from prefect_stablestudio.client.downloads import ResultMedia
from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, intent_key
from prefect_stablestudio.flows.models import SavedResult
from prefect_stablestudio.flows.preflight import check_quote
from prefect_stablestudio.flows.quotes import quote_generation
from prefect_stablestudio.flows.receipts import ReceiptBook
from prefect_stablestudio.flows.storage import (
    StorageOptions,
    content_type_for,
    exists_with_checksum,
    join_uri,
    read_input,
)
from prefect_stablestudio.flows.tasks import (
    PaidJob,
    WalletRef,
    _retry_submit,
    _retry_transient,
    load_wallet,
    upload_image,
    wait_for_job,
)

__all__ = ["GenerationOutcome", "extension_for", "generate", "save_media", "submit_generation"]

_RUN_HOOKS: list[Any] = [release_run_budget]
# Content types a result may come in, and the extension it is saved under.
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
}
_PLACEHOLDER_URL = "https://placeholder.invalid/input.png"


def extension_for(content_type: str) -> str:
    """The file extension a result of ``content_type`` is saved under.

    Example:
        >>> extension_for("video/mp4"), extension_for("image/gif; charset=binary")
        ('mp4', 'gif')
    """
    base = content_type.split(";", 1)[0].strip().lower()
    if base in _EXTENSIONS:
        return _EXTENSIONS[base]
    guessed = mimetypes.guess_extension(base) if base else None
    return guessed.lstrip(".") if guessed else "bin"


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


@task(
    name="submit-generation",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_submit,
)
async def submit_generation(
    wallet: WalletRef,
    model: str,
    operation: str,
    body: dict[str, Any],
    idempotency_key: str,
    *,
    intent_store: IntentStore | str | None = None,
) -> PaidJob:
    """Pay for and submit any generate route, at most once per idempotency key (as `submit_edit` does).

    ``body`` is the validated wire body (``build_request(...).body()``). A job recorded under the key is
    returned as is; a payment signed earlier is re-sent with the body it was signed for, never signed anew.

    Example:
        ```python
        body = build_request("grok", "generate", {"prompt": "a lighthouse"}).body()
        job = await submit_generation("my-wallet", "grok", "generate", body, key)
        ```
    """
    block = await load_wallet(wallet)
    store = intent_store if isinstance(intent_store, IntentStore) else IntentStore(intent_store)
    return await steps.submit_route(
        steps.own_client(block, ReceiptBook.beside(store)), block, model, operation, body, idempotency_key,
        store,
    )


@task(
    name="save-media",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_transient,
)
async def save_media(
    url: str,
    folder: str,
    stem: str,
    *,
    storage_options: StorageOptions | None = None,
    download_timeout: float = 300.0,
    media: ResultMedia = "image",
    max_bytes: int | None = None,
) -> SavedResult:
    """Stream a result (image or video) at once into ``folder/stem.<ext>``, the extension following the type
    sniffed from its first bytes. Held to ``max_bytes`` (default 64 MiB for an image, 2 GiB for a video).

    Example:
        ```python
        saved = await save_media(result.video_url, "s3://renders/", "waves", media="video")  # waves.mp4
        ```
    """
    saved = await steps.save(
        url,
        lambda content_type: join_uri(folder, f"{stem}.{extension_for(content_type)}"),
        storage_options=storage_options, download_timeout=download_timeout, media=media, max_bytes=max_bytes,
    )
    return saved


async def _reuse(
    intent: PaymentIntent, entry: CatalogEntry, storage_options: StorageOptions | None
) -> GenerationOutcome | None:
    """The recorded outcome when this generation is complete and its file is intact (a rerun after the result
    URL expired must not download again); None to carry on."""
    if intent.status != "complete" or not intent.job_id or not intent.output_uri or not intent.output_sha256:
        return None
    if not await exists_with_checksum(intent.output_uri, intent.output_sha256, storage_options):
        return None
    return GenerationOutcome(
        model=entry.model, operation=entry.operation, media=entry.media, job_id=intent.job_id,
        idempotency_key=intent.key,
        cost_usd=dollars_from_atomic(intent.payment.amount if intent.payment else 0),
        paid_now=False, transaction=intent.transaction, output_uri=intent.output_uri,
        sha256=intent.output_sha256, content_type=content_type_for(b"", intent.output_uri),
    )


def _check_params(entry: CatalogEntry, prompt: str, params: dict[str, Any], n_images: int) -> None:
    """Validate before anything is read, uploaded or paid (input images stand in as placeholder URLs)."""
    placeholders = [_PLACEHOLDER_URL] * n_images
    entry.build(entry.with_images({**params, "prompt": prompt}, placeholders))


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
    logger = get_run_logger()
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
    intent = await store.get(key) or PaymentIntent(key=key, wallet=wallet.public_address)
    reused = await _reuse(intent, entry, storage_options)
    if reused is not None:
        logger.info("%s/%s already done (job %s): reused %s", model, operation,
                    intent.job_id, reused.output_uri)
        return reused
    upload_cost = 0
    blob_urls = [rec.get("blob_url", "") for rec in intent.inputs]
    need_upload = len(blob_urls) != len(inputs) or not all(blob_urls)
    if preflight and intent.job_id is None and (intent.payment is None or intent.status == "rejected"):
        known = not inputs or not need_upload
        request = entry.build(entry.with_images({**params, "prompt": prompt}, blob_urls)) if known else None
        path = f"/api/generate/{quote(model, safe='')}/{quote(operation, safe='')}"
        cost = await quote_generation(
            wallet, path, request.body() if request else None, inputs if need_upload else []
        )
        await check_quote(wallet, cost, budget, check=True, prefix="generate")
    if intent.job_id is None and intent.payment is None and need_upload:
        uploaded = [
            await upload_image(wallet, image, storage_options=storage_options, intent_store=store)
            for image in inputs
        ]
        upload_cost = sum(u.cost for u in uploaded)
        blob_urls = [u.blob_url for u in uploaded]
        records = [
            {"uri": i.uri, "sha256": i.sha256, "blob_url": b} for i, b in zip(inputs, blob_urls, strict=True)
        ]
        intent = await store.put(intent.model_copy(update={"inputs": records}))
    body = entry.build(entry.with_images({**params, "prompt": prompt}, blob_urls)).body()

    paid = await submit_generation(wallet, model, operation, body, key, intent_store=store)
    result = await wait_for_job(
        wallet, paid.job_id,
        max_wait_seconds=max_wait_seconds or entry.max_wait_seconds,
        expected_seconds=expected_job_seconds or entry.expected_seconds,
    )
    if not result.media_url:
        raise RuntimeError(f"job {paid.job_id} completed without a result URL")
    stem = output_name or f"{model}-{operation}-{paid.job_id}"
    saved = await save_media(
        result.media_url, destination, stem, storage_options=storage_options, media=entry.media,
        max_bytes=max_result_bytes or wallet.result_limit(entry.media),
    )
    thumbnail = None
    if result.thumbnail_url:
        thumbnail = await save_media(
            result.thumbnail_url, destination, f"{stem}-thumbnail", storage_options=storage_options,
            media="image", max_bytes=wallet.result_limit("image"),
        )
    latest = await store.get(key) or intent
    done = {"status": "complete", "output_uri": saved.uri, "output_sha256": saved.sha256}
    await store.put(latest.model_copy(update=done))
    logger.info("%s/%s saved to %s", model, operation, saved.uri)
    return GenerationOutcome(
        model=model, operation=operation, media=entry.media, job_id=paid.job_id, idempotency_key=key,
        cost_usd=dollars_from_atomic(paid.cost), upload_cost_usd=dollars_from_atomic(upload_cost),
        paid_now=paid.paid_now,
        transaction=paid.transaction, output_uri=saved.uri, sha256=saved.sha256,
        content_type=saved.content_type, thumbnail_uri=thumbnail.uri if thumbnail else None,
    )
