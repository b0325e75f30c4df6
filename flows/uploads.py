"""An upload and its two records: the ticket it paid for (`TicketBook`) and what it signed (`PaymentLog`).

A paid upload ticket is spent once. An upload pays $0.01 for a ticket (`uploadId`, `clientToken`, `pathname`,
`expiresAt`), then PUTs the bytes with it and confirms. If the PUT fails, or the process dies, after the
ticket was paid, a retry or a rerun of the same upload (same wallet, input bytes and name) finds the ticket in
the intent store's `uploads` folder and uses it while its token is valid (about 5 minutes), paying nothing.
Only an expired or refused ticket is replaced, and that further fee is reported
(`UploadedImage.rebought_because`, `tickets_bought` on the record).

An upload can also fail after its money moved (a blob PUT that never succeeded) or leave the outcome unknown
(a reply lost after settlement). Such payments bought nothing usable, yet every cent must show: the upload's
`PaymentLog` (its record in the `PaymentGuard`) lists them; they are logged at WARNING (nonce, amount,
recipient; never the key) and travel as `UnreconciledPayment` records on `UploadFailedAfterPaying` to the
job's outcome, the batch result and the run's artifacts.

Example:
    ```python
    uploaded = await upload(client_per_step(wallet), await read_input("s3://photos/cat.png"), store=store)
    ```
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.client.models import UploadTicket
from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.client.payment import NoHooks, Payment, PaymentOutcome
from prefect_stablestudio.client.uploads import usable
from prefect_stablestudio.flows.errors import FailedBeforePayment, UploadFailedAfterPaying
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, intent_key
from prefect_stablestudio.flows.models import UnreconciledPayment
from prefect_stablestudio.flows.retries import is_transient
from prefect_stablestudio.flows.steps import STEP_LOG_LEVEL, StepClients
from prefect_stablestudio.flows.storage import InputImage, StorageOptions

__all__ = ["PaymentLog", "TicketBook", "UploadedImage", "upload"]


class UploadedImage(BaseModel):
    """An input image uploaded to StableStudio's blob store."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    blob_url: str
    cost: int = 0
    ticket_reused: bool = Field(default=False, description="Uploaded with a ticket paid earlier: no new fee.")
    tickets_bought: int = Field(default=1, description="Tickets this upload paid for now (2: a further fee).")
    rebought_because: Literal["expired", "refused"] | None = None


async def upload(
    clients: StepClients,
    image: InputImage,
    *,
    filename: str | None = None,
    storage_options: StorageOptions | None = None,
    store: IntentStore | None = None,
) -> UploadedImage:
    """Upload one image (streamed); see `prefect_stablestudio.flows.tasks.upload_image` for the errors.

    With `store`, the upload's paid ticket is recorded as soon as it arrives (before the PUT) under a key of
    the wallet, the input and its name, and a retry or rerun uses it while it is valid: one fee per upload.
    A further ticket (the kept one expired or was refused) is logged at WARNING and counted in
    `UploadedImage.tickets_bought`.

    Example:
        ```python
        uploaded = await upload(client_per_step(wallet), await read_input("s3://photos/cat.png"), store=store)
        ```
    """
    log = PaymentLog()
    name = filename or image.filename
    async with clients(log, [image.uri]) as client:
        book = await TicketBook.open(store, client.address, image, name) if store is not None else None
        if book is not None and book.finished_blob is not None:
            return UploadedImage(
                uri=image.uri, sha256=image.sha256, blob_url=book.finished_blob, cost=0, ticket_reused=True,
                tickets_bought=0,
            )
        try:
            result = await client.upload_detailed(
                image.source,
                filename=name,
                content_type=image.content_type,
                storage_options=storage_options,
                ticket=book.held if book is not None else None,
                on_ticket=book.keep if book is not None else None,
            )
        except Exception as exc:
            # This call's own log: the client may be shared with edits that signed meanwhile.
            if not log.signed and is_transient(exc):
                raise FailedBeforePayment(f"upload failed before paying: {exc}") from exc
            owed = log.unreconciled("upload", exc)
            if owed:
                raise UploadFailedAfterPaying.listing(image.uri, owed, exc) from exc
            raise
    cost = sum(p.amount for p in result.payments)
    logger = get_run_logger()
    if result.rebought_because is not None:
        logger.warning(
            "upload of %s bought a further ticket ($%s) because the one paid earlier %s",
            image.uri[:200], dollars_from_atomic(result.payments[-1].amount) if result.payments else 0,
            "had expired" if result.rebought_because == "expired" else "was refused by the blob API",
        )
    if book is not None:
        await book.finish(image, result.blob_url)
    logger.log(
        STEP_LOG_LEVEL.get(), "uploaded %s (%d bytes) for $%s%s", image.uri[:200], result.size,
        dollars_from_atomic(cost), " (with a ticket paid earlier)" if result.ticket_reused else "",
    )
    return UploadedImage(
        uri=image.uri, sha256=image.sha256, blob_url=result.blob_url, cost=cost,
        ticket_reused=result.ticket_reused, tickets_bought=len(result.payments),
        rebought_because=result.rebought_because,
    )


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


class PaymentLog(NoHooks):
    """Every payment a client signs and what became of it, so that a failed call still accounts for them."""

    def __init__(self) -> None:
        self.signed: dict[str, Payment] = {}
        self.outcomes: dict[str, PaymentOutcome] = {}

    async def after_signing(self, payment: Payment) -> None:
        """Remember the payment."""
        self.signed[payment.nonce] = payment

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """Remember what happened to it."""
        self.signed[payment.nonce] = payment
        self.outcomes[payment.nonce] = outcome

    def unreconciled(self, what: Literal["upload", "edit"], exc: BaseException) -> list[UnreconciledPayment]:
        """The payments that moved money or may have (all but the refused), logged at WARNING."""
        try:
            logger: Any = get_run_logger()
        except MissingContextError:  # used outside a flow or task run
            logger = get_logger("prefect_stablestudio.payments")
        owed: list[UnreconciledPayment] = []
        for nonce, payment in self.signed.items():
            outcome = self.outcomes.get(nonce)
            if outcome is not None and outcome.status == "rejected":
                continue
            status: Literal["settled", "unknown"] = (
                "settled" if outcome is not None and outcome.status == "settled" else "unknown"
            )
            reason = (outcome.reason if outcome is not None else None) or f"{type(exc).__name__}: {exc}"
            owed.append(UnreconciledPayment.of(payment, what=what, status=status, reason=reason))
            logger.warning(
                "%s payment %s of $%s to %s is %s but bought nothing usable (%s): reconcile it by its nonce",
                what, nonce, dollars_from_atomic(payment.amount), payment.pay_to,
                "settled" if status == "settled" else "of unknown outcome", reason[:200],
            )
        return owed
