"""Prefect tasks and flows of prefect-stablestudio.

Example:
    ```python
    from flows import edit_image

    outcome = await edit_image("my-wallet", "s3://photos/cat.png", "make it snow", "s3://edits/")
    ```
"""

from flows.edit import EditBatchFailed, EditFailed, edit_image, edit_image_sync, edit_images, edit_images_sync
from flows.generate import GenerationOutcome, generate, save_media, submit_generation
from flows.intents import IntentStore, PaymentIntent, intent_key
from flows.models import BatchResult, EditItem, EditOptions, EditOutcome, SavedResult, UnreconciledPayment
from flows.reconcile import UploadFailedAfterPaying
from flows.tasks import PaidJob, UploadedImage, save_result, submit_edit, upload_image, wait_for_job

__all__ = [
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
    "SavedResult",
    "UnreconciledPayment",
    "UploadFailedAfterPaying",
    "UploadedImage",
    "edit_image",
    "edit_image_sync",
    "edit_images",
    "edit_images_sync",
    "generate",
    "intent_key",
    "save_media",
    "save_result",
    "submit_edit",
    "submit_generation",
    "upload_image",
    "wait_for_job",
]
