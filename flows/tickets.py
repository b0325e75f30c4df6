"""A paid upload ticket is spent once: each upload's ticket recorded before its PUT, reused while valid.

An upload pays $0.01 for a ticket (`uploadId`, `clientToken`, `pathname`, `expiresAt`), then PUTs the bytes
with it and confirms. If the PUT fails, or the process dies, after the ticket was paid, a retry or a rerun of
the same upload (same wallet, input bytes and name) finds the ticket in the intent store's `uploads` folder
and uses it while its token is valid (about 5 minutes), paying nothing. Only an expired or refused ticket is
replaced, and that further fee is reported (`UploadedImage.rebought_because`, `tickets_bought` on the record).

Example:
    ```python
    book = await TicketBook.open(store.uploads(), client.address, image, "cat.png")
    result = await client.upload_detailed(image.source, ticket=book.held, on_ticket=book.keep)
    await book.finish(image, result.blob_url)
    ```
"""

from __future__ import annotations

from prefect_stablestudio.client.models import UploadTicket
from prefect_stablestudio.client.payment import Payment
from prefect_stablestudio.client.uploads import usable
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, intent_key
from prefect_stablestudio.flows.storage import InputImage

__all__ = ["TicketBook"]


class TicketBook:
    """The record of one logical upload: the ticket it paid for, and the blob once it is up.

    Args:
        store: where upload records live (`IntentStore.uploads()`).
        record: this upload's record (new or read back).
    """

    def __init__(self, store: IntentStore, record: PaymentIntent) -> None:
        self.store = store
        self.record = record

    @classmethod
    async def open(cls, store: IntentStore, wallet: str, image: InputImage, filename: str) -> TicketBook:
        """The record of uploading `image` as `filename` from `wallet` (a new one when there is none)."""
        key = intent_key(
            "upload", wallet, inputs=[(image.uri, image.sha256)],
            params={"filename": filename, "content_type": image.content_type},
        )
        return cls(store, await store.get(key) or PaymentIntent(key=key, wallet=wallet))

    @property
    def held(self) -> UploadTicket | None:
        """The ticket paid earlier whose PUT or confirm did not finish (the client checks its validity)."""
        return self.record.ticket if self.record.status == "submitted" else None

    @property
    def finished_blob(self) -> str | None:
        """The blob URL of a finished upload whose ticket is still valid (so its blob surely still exists)."""
        ticket, inputs = self.record.ticket, self.record.inputs
        if self.record.status != "complete" or ticket is None or not usable(ticket) or not inputs:
            return None
        return inputs[0].get("blob_url") or None

    async def keep(self, ticket: UploadTicket, payment: Payment | None) -> None:
        """Persist a ticket just bought, before its PUT (the client's `on_ticket`)."""
        update = {
            "status": "submitted", "ticket": ticket, "payment": payment,
            "tickets_bought": self.record.tickets_bought + 1,
        }
        self.record = await self.store.put(self.record.model_copy(update=update))

    async def finish(self, image: InputImage, blob_url: str) -> None:
        """Record the blob the ticket bought."""
        inputs = [{"uri": image.uri, "sha256": image.sha256, "blob_url": blob_url}]
        done = {"status": "complete", "inputs": inputs}
        self.record = await self.store.put(self.record.model_copy(update=done))
