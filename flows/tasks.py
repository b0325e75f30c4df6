"""Prefect tasks: upload an image, submit a paid edit, wait for the job, save the result.

Each task creates its own HTTP client (a submitted task may run on its own event loop) and takes the wallet
by block name or as a block. Retries (counts and delays in `flows/retries.py`) are chosen so that none can pay
twice:

- `upload_image` retries only failures that happened before anything was signed;
- `submit_edit` reconciles with the payment-intent store on every attempt (a retry re-sends the same signed
  authorization, or resumes the recorded job), and never retries refusals or an unknown outcome;
- `wait_for_job` and `save_result` move no money and retry transient errors; `wait_for_job` is never cached.

Example:
    ```python
    from prefect_stablestudio.flows.tasks import submit_edit, upload_image, wait_for_job, save_result

    blob = await upload_image("my-wallet", "s3://photos/cat.png")
    job = await submit_edit("my-wallet", EditRequest(prompt="snow", images=[blob.blob_url]), key)
    result = await wait_for_job("my-wallet", job.job_id)
    saved = await save_result(result.image_url, "s3://edits/cat.png")
    ```
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_stablestudio.client.downloads import ResultMedia
from prefect_stablestudio.client.media_types import extension_for
from prefect_stablestudio.client.models import EditRequest, JobResult
from prefect_stablestudio.flows import steps
from prefect_stablestudio.flows.intents import IntentStore
from prefect_stablestudio.flows.models import SavedResult
from prefect_stablestudio.flows.receipts import ReceiptBook
from prefect_stablestudio.flows.retries import SAVE_TASK, SUBMIT_TASK, UPLOAD_TASK, WAIT_TASK
from prefect_stablestudio.flows.steps import PaidJob, WalletRef, load_wallet
from prefect_stablestudio.flows.storage import InputImage, StorageOptions, join_uri, read_input
from prefect_stablestudio.flows.uploads import UploadedImage, upload

__all__ = [
    "PaidJob",
    "UploadedImage",
    "WalletRef",
    "load_wallet",
    "save_media",
    "save_result",
    "submit_edit",
    "submit_generation",
    "upload_image",
    "wait_for_job",
]

@task(
    name="upload-image",
    cache_policy=NO_CACHE,

    retries=UPLOAD_TASK.retries,
    retry_delay_seconds=UPLOAD_TASK.delays,
    retry_condition_fn=UPLOAD_TASK.condition,)
async def upload_image(
    wallet: WalletRef,
    source: str | bytes | InputImage,
    *,
    filename: str | None = None,
    storage_options: StorageOptions | None = None,
    intent_store: IntentStore | str | None = None,
) -> UploadedImage:
    """Upload an image (local path, fsspec URL such as s3://bucket/key, or bytes) and return its blob URL.

    The paid ticket is recorded in `intent_store`'s `uploads` folder before the PUT (default under
    PREFECT_HOME): a retry or rerun of the same upload uses it while it is valid (~5 min), paying nothing.

    Costs one upload fee ($0.01). Retried only when it failed before anything was signed. The file is
    streamed, never held whole. `source` may also be an `InputImage` from `read_input` (not read again).

    Raises:
        UploadFailedAfterPaying: the upload failed after paying, or perhaps paying; the payments (nonce,
            amount, settled or unknown) are listed on it and logged at WARNING.
        InvalidRequest: not an image, or over the size limit (nothing paid).

    Example:
        ```python
        image = await upload_image("my-wallet", "s3://photos/cat.png", storage_options={"profile": "prod"})
        ```
    """
    block = await load_wallet(wallet)
    if isinstance(source, InputImage):
        image = source
    else:
        image = await read_input(source, storage_options, name=filename or "")
    store = intent_store if isinstance(intent_store, IntentStore) else IntentStore(intent_store)
    return await upload(
        steps.client_per_step(block), image, filename=filename, storage_options=storage_options,
        store=store.uploads(),
    )


@task(
    name="submit-edit",
    cache_policy=NO_CACHE,

    retries=SUBMIT_TASK.retries,
    retry_delay_seconds=SUBMIT_TASK.delays,
    retry_condition_fn=SUBMIT_TASK.condition,)
async def submit_edit(
    wallet: WalletRef,
    request: EditRequest,
    idempotency_key: str,
    *,
    intent_store: IntentStore | str | None = None,
) -> PaidJob:
    """Pay for and submit an edit, at most once per idempotency key.

    Reconciles first: a job recorded under the key is returned as is; a payment signed earlier (a crash, a
    lost reply, an unknown outcome) is re-sent, never signed anew. Otherwise the payment is persisted before
    it is sent, and the job id before this task returns.

    Raises:
        SpendCapExceeded / PolicyRefused: refused before signing (nothing paid).
        PaymentRejected: the server refused the payment (no money moved).
        PaymentOutcomeUnknown: money may have moved; the intent is recorded as "unknown" and a rerun re-sends
            the same authorization to settle the question.

    Example:
        ```python
        job = await submit_edit("my-wallet", EditRequest(prompt="snow", images=[blob_url]), key)
        ```
    """
    block = await load_wallet(wallet)
    store = intent_store if isinstance(intent_store, IntentStore) else IntentStore(intent_store)
    clients = steps.client_per_step(block, ReceiptBook.beside(store))
    return await steps.submit(clients, block, request, idempotency_key, store)


@task(
    name="wait-for-job",
    cache_policy=NO_CACHE,

    retries=WAIT_TASK.retries,
    retry_delay_seconds=WAIT_TASK.delays,
    retry_condition_fn=WAIT_TASK.condition,)
async def wait_for_job(
    wallet: WalletRef,
    job_id: str,
    *,
    max_wait_seconds: float = 600.0,
    expected_seconds: float = 5.0,
    report_progress: bool = True,
) -> JobResult:
    """Poll a job until it completes; log (and, optionally, show as a progress artifact) its progress.

    Never cached: a cached status would freeze the loop. Polling is free (Sign-In-With-X, no payment).

    Raises:
        JobFailed: the job failed. JobNotFound: unknown, or another wallet's. JobTimeout: past the deadline.

    Example:
        ```python
        result = await wait_for_job("my-wallet", job.job_id, max_wait_seconds=120)
        ```
    """
    block = await load_wallet(wallet)
    return await steps.wait(
        steps.client_per_step(block), job_id, max_wait_seconds=max_wait_seconds,
        expected_seconds=expected_seconds, report_progress=report_progress,
    )


@task(
    name="save-result",
    cache_policy=NO_CACHE,

    retries=SAVE_TASK.retries,
    retry_delay_seconds=SAVE_TASK.delays,
    retry_condition_fn=SAVE_TASK.condition,)
async def save_result(
    image_url: str,
    destination: str,
    *,
    storage_options: StorageOptions | None = None,
    download_timeout: float = 60.0,
    max_result_bytes: int | None = None,
) -> SavedResult:
    """Download a result at once (its URL expires in about 20 minutes) and write it to `destination`.

    `destination` is a full file path or fsspec URL (s3://bucket/key.png); local parents are created. Returns
    the URI and the sha256 of the bytes written. The result is streamed (never held whole), written under a
    temporary name and committed whole; over `max_result_bytes` (default 64 MiB) or not an image, it stops
    with `ResultTooLarge` / `UnexpectedMediaType` and nothing is left at `destination`.

    Example:
        ```python
        saved = await save_result(result.image_url, "s3://edits/cat.png")
        print(saved.uri, saved.sha256)
        ```
    """
    return await steps.save(
        image_url, destination, storage_options=storage_options, download_timeout=download_timeout,
        max_bytes=max_result_bytes,
    )


@task(
    name="submit-generation",
    cache_policy=NO_CACHE,
    retries=SUBMIT_TASK.retries,
    retry_delay_seconds=SUBMIT_TASK.delays,
    retry_condition_fn=SUBMIT_TASK.condition,
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
        steps.client_per_step(block, ReceiptBook.beside(store)), block, model, operation, body,
        idempotency_key, store,
    )


@task(
    name="save-media",
    cache_policy=NO_CACHE,
    retries=SAVE_TASK.retries,
    retry_delay_seconds=SAVE_TASK.delays,
    retry_condition_fn=SAVE_TASK.condition,
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
