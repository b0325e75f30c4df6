"""Prefect tasks and flows of prefect-stablestudio.

Example:
    ```python
    from prefect_stablestudio.flows import edit_image

    outcome = await edit_image("my-wallet", "s3://photos/cat.png", "make it snow", "s3://edits/")
    ```
"""

from prefect_stablestudio.flows.edit import (
    edit_image,
    edit_image_sync,
    edit_images,
    edit_images_sync,
)
from prefect_stablestudio.flows.errors import EditBatchFailed, EditFailed, UploadFailedAfterPaying
from prefect_stablestudio.flows.generate import GenerationOutcome, generate
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, intent_key
from prefect_stablestudio.flows.models import (
    BatchResult,
    EditItem,
    EditOptions,
    EditOutcome,
    SavedResult,
    UnreconciledPayment,
)
from prefect_stablestudio.flows.pipelines import PipelineReport, edit_new_images
from prefect_stablestudio.flows.preflight import quote_edits, quote_edits_flow
from prefect_stablestudio.flows.quotes import BatchQuote, QuoteLine
from prefect_stablestudio.flows.shards import ShardedReport, edit_shard, edit_sharded
from prefect_stablestudio.flows.tasks import (
    PaidJob,
    UploadedImage,
    save_media,
    save_result,
    submit_edit,
    submit_generation,
    upload_image,
    wait_for_job,
)

__all__ = [
    "BatchQuote",
    "BatchResult",
    "EditBatchFailed",
    "EditFailed",
    "EditItem",
    "EditOptions",
    "EditOutcome",
    "GenerationOutcome",
    "IntentStore",
    "PaidJob",
    "PaymentIntent",
    "PipelineReport",
    "QuoteLine",
    "SavedResult",
    "ShardedReport",
    "UnreconciledPayment",
    "UploadFailedAfterPaying",
    "UploadedImage",
    "edit_image",
    "edit_image_sync",
    "edit_images",
    "edit_images_sync",
    "edit_new_images",
    "edit_shard",
    "edit_sharded",
    "generate",
    "intent_key",
    "quote_edits",
    "quote_edits_flow",
    "save_media",
    "save_result",
    "submit_edit",
    "submit_generation",
    "upload_image",
    "wait_for_job",
]
