"""Receipts for the books: one record per payment and outcome, on any fsspec URL, read back as one ledger.

Every payment a step's client sends ends in `after_outcome` (settled, unknown or rejected by the server):
`PaymentRecorder`, installed by the steps' clients (`flows/steps.py`), writes a `Receipt` there and emits the
payment's event (`blocks/events.py`). That is the one place both facts become known, for uploads and
edits alike. `reporting` wraps the same clients and emits the events of what never reaches a payment: a
refusal by the policy or a cap (nothing signed), and a paid job that failed.

Why one small object per receipt and not one appended file: appending is not atomic on S3 (an "append" is a
read, then a rewrite of the whole object), so two workers paying at once would lose each other's lines. Each
receipt is its own object, `<book>/<YYYY-MM-DD>/<nonce>-<outcome>.json`, written whole in one PUT (locally,
a temporary file renamed into place): writers never touch each other's objects, whatever their number. A
nonce is unique per payment, so a re-sent payment (the same nonce) that first came back "unknown" and then
"settled" leaves two objects; the reader folds them into one line, the final outcome winning (settled over
unknown over rejected; a rejection the chain proved, `authorization_expired_unused`, over unknown too). The
day folder lets `--since` skip older days without reading them.

By default the book lives next to the payment records: `<intent store>/receipts`.

Example:
    ```python
    book = ReceiptBook.beside(IntentStore("s3://bucket/stablestudio-intents"))
    for receipt in await book.read(since=date(2026, 12, 1)):
        print(receipt.time, receipt.route, receipt.amount_usd, receipt.transaction)
    ```
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from fsspec.core import url_to_fs
from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.blocks.budget import SpendCapExceeded, current_flow_run_id
from prefect_stablestudio.blocks.events import (
    JOB_FAILED,
    PAYMENT_REFUSED,
    PAYMENT_SETTLED,
    PAYMENT_UNKNOWN,
    emit_spend_event,
    money_fields,
)
from prefect_stablestudio.client.errors import BudgetExceeded, JobFailed, PolicyRefused
from prefect_stablestudio.client.money import plain_dollars_from_atomic
from prefect_stablestudio.client.paying import EXPIRED_UNUSED
from prefect_stablestudio.client.payment import Payment, PaymentHooks, PaymentOutcome
from prefect_stablestudio.flows.intents import IntentStore, default_intent_url
from prefect_stablestudio.flows.storage import StorageOptions, local_path

if TYPE_CHECKING:
    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.client.studio import StableStudioClient
    from prefect_stablestudio.client.x402 import Quote

__all__ = ["PaymentRecorder", "Receipt", "ReceiptBook", "reporting", "route_of"]

Outcome = Literal["settled", "unknown", "rejected"]
_RANK = {"rejected": 0, "unknown": 1, "settled": 2}
_NAME = re.compile(r"(0x[0-9a-fA-F]+)-(settled|unknown|rejected)\.json")
_log = logging.getLogger("prefect_stablestudio.receipts")

def route_of(resource_url: str) -> str:
    """The route a payment bought, from its resource URL.

    Example:
        >>> route_of("https://stablestudio.dev/api/generate/flux-2-pro/edit"), route_of("http://x/api/upload")
        ('flux-2-pro/edit', 'upload')
    """
    path = unquote(urlsplit(resource_url).path)
    for prefix in ("/api/generate/", "/api/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path.lstrip("/")


class Receipt(BaseModel):
    """One payment and what became of it: a line of the ledger. Public facts only (no key, no signature)."""

    model_config = ConfigDict(frozen=True)

    time: datetime = Field(description="When the outcome became known (UTC).")
    wallet: str = Field(description="The paying address.")
    wallet_block: str | None = Field(default=None, description="The wallet block's name, if any.")
    network: str = Field(description="CAIP-2 network (eip155:8453) or tempo:<chain id>.")
    method: Literal["x402", "mpp"] = "x402"
    asset: str
    route: str = Field(description="What was bought: upload, flux-2-pro/edit, ...")
    amount: int = Field(description="Atomic units (USDC: 6 decimals).")
    amount_usd: str = Field(description="The amount in dollars, as a decimal string.")
    pay_to: str
    nonce: str = Field(description="The EIP-3009 nonce, or for MPP the transaction hash: unique per payment.")
    transaction: str | None = Field(default=None, description="The settlement's transaction hash.")
    job_id: str | None = None
    inputs: list[str] = Field(default_factory=list, description="The input URIs the payment bought work on.")
    flow_run_id: str | None = None
    outcome: Outcome
    reason: str | None = None

    @classmethod
    def of(
        cls, payment: Payment, outcome: PaymentOutcome, *, wallet_block: str | None, inputs: list[str]
    ) -> Receipt:
        """The receipt of `payment` given its `outcome`, in the current flow run (if any)."""
        settlement = outcome.settlement
        transaction = (settlement.transaction if settlement is not None else "") or None
        if transaction is None and payment.method == "mpp" and outcome.status == "settled":
            transaction = payment.nonce  # an MPP payment's nonce is its transaction hash
        response = outcome.response
        job_id = response.get("jobId") if isinstance(response, dict) else None
        return cls(
            time=datetime.now(UTC), wallet=payment.payer, wallet_block=wallet_block, network=payment.network,
            method=payment.method, asset=payment.asset, route=route_of(payment.resource_url),
            amount=payment.amount, amount_usd=plain_dollars_from_atomic(payment.amount),
            pay_to=payment.pay_to,
            nonce=payment.nonce, transaction=transaction, job_id=job_id if isinstance(job_id, str) else None,
            inputs=inputs, flow_run_id=current_flow_run_id(), outcome=outcome.status,
            reason=(outcome.reason or None) and str(outcome.reason)[:300],
        )

    def event_payload(self) -> dict[str, Any]:
        """The payment event's payload: the receipt's public facts."""
        return {
            "route": self.route, **money_fields(self.amount), "network": self.network, "method": self.method,
            "asset": self.asset, "pay_to": self.pay_to, "nonce": self.nonce, "transaction": self.transaction,
            "job_id": self.job_id, "inputs": self.inputs[:8], "flow_run_id": self.flow_run_id,
            "outcome": self.outcome, "reason": self.reason,
        }


class ReceiptBook:
    """The receipts ledger: a folder (local path or fsspec URL) of one small JSON object per receipt.

    Args:
        url: the folder; default `<default intent store>/receipts`.
        storage_options: fsspec options for `url`.
    """

    def __init__(self, url: str | None = None, storage_options: StorageOptions | None = None) -> None:
        self.url = (url or f"{default_intent_url()}/receipts").rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._local_dir = local_path(self.url)

    @classmethod
    def beside(cls, store: IntentStore) -> ReceiptBook:
        """The book next to an intent store's records: `<store>/receipts`, same storage options."""
        return cls(f"{store.url}/receipts", store.storage_options)

    def _name(self, receipt: Receipt) -> str:
        return f"{receipt.time:%Y-%m-%d}/{receipt.nonce.lower()}-{receipt.outcome}.json"

    async def append(self, receipt: Receipt) -> None:
        """Write `receipt` as its own object (see the module docstring for why that is safe to do at once)."""
        data = receipt.model_dump_json().encode("utf-8")
        if self._local_dir is not None:
            _write_local(os.path.join(self._local_dir, self._name(receipt)), data)
            return
        fs, path = url_to_fs(f"{self.url}/{self._name(receipt)}", **self.storage_options)
        await asyncio.to_thread(fs.pipe_file, path, data)  # one PUT: atomic on S3 and its kin

    async def read(self, *, since: date | None = None, wallet: str | None = None) -> list[Receipt]:
        """Every payment once (its final outcome), oldest first; `since` and `wallet` filter."""
        return await asyncio.to_thread(self._read, since, wallet)

    def _read(self, since: date | None, wallet: str | None) -> list[Receipt]:
        fs, root = url_to_fs(self.url, **self.storage_options)
        try:
            paths = [p for p in fs.find(root) if _NAME.fullmatch(p.rsplit("/", 1)[-1])]
        except FileNotFoundError:
            return []
        if since is not None:
            paths = [p for p in paths if (_day_of(p) or since) >= since]
        final: dict[str, Receipt] = {}
        for path, raw in (fs.cat(paths) if paths else {}).items():
            try:
                receipt = Receipt.model_validate_json(raw)
            except ValueError:
                _log.warning("receipt %s is unreadable; skipped", path)
                continue
            if wallet is not None and receipt.wallet.lower() != wallet.lower():
                continue
            if since is not None and receipt.time.date() < since:
                continue
            known = final.get(receipt.nonce.lower())
            if known is None or _rank(receipt) > _rank(known):
                final[receipt.nonce.lower()] = receipt
        return sorted(final.values(), key=lambda r: r.time)


def _rank(receipt: Receipt) -> float:
    """How final an outcome is. The token itself showing an authorization unused after its validBefore
    (`authorization_expired_unused`) proves no money moved: that outranks an earlier "unknown"."""
    if receipt.outcome == "rejected" and receipt.reason == EXPIRED_UNUSED:
        return 1.5
    return _RANK[receipt.outcome]


def _day_of(path: str) -> date | None:
    folder = path.rsplit("/", 2)[-2] if "/" in path else ""
    try:
        return date.fromisoformat(folder)
    except ValueError:
        return None


def _write_local(path: str, data: bytes) -> None:
    """Write whole or not at all: a temporary file in the same folder, renamed into place."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".receipt-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class PaymentRecorder:
    """Payment hooks that, after the inner hooks (the intent record), write the receipt and emit the event.

    Neither ever fails the payment: the intent record is what a retry relies on, and it is written first;
    a receipt or event that cannot be written is logged at WARNING.

    Args:
        wallet: the paying wallet (its address and block name label receipts and events).
        book: where receipts go.
        inner: the step's own hooks (intent store, payment log), called first.
        inputs: the inputs (URIs) the payments buy: receipts list them.
    """

    def __init__(
        self, wallet: StableStudioWallet, book: ReceiptBook, inner: PaymentHooks | None,
        *, inputs: Sequence[str] = (),
    ) -> None:
        self.wallet = wallet
        self.book = book
        self.inner = inner
        self.inputs = list(inputs)

    async def before_signing(self, quote: Quote) -> None:
        """Pass through."""
        if self.inner is not None:
            await self.inner.before_signing(quote)

    async def after_signing(self, payment: Payment) -> None:
        """Pass through."""
        if self.inner is not None:
            await self.inner.after_signing(payment)

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """The inner hooks first, then the receipt and the event (even when the inner hooks raised)."""
        try:
            if self.inner is not None:
                await self.inner.after_outcome(payment, outcome)
        finally:
            await self._record(payment, outcome)

    async def _record(self, payment: Payment, outcome: PaymentOutcome) -> None:
        if not payment.nonce:  # an MPP charge that could not be signed: no payment existed
            return
        try:
            receipt = Receipt.of(
                payment, outcome, wallet_block=self.wallet.block_name, inputs=self.inputs
            )
        except Exception as exc:
            _log.warning("receipt of payment %s not built: %s", payment.nonce, type(exc).__name__)
            return
        name = {"settled": PAYMENT_SETTLED, "unknown": PAYMENT_UNKNOWN}.get(outcome.status, PAYMENT_REFUSED)
        payload = receipt.event_payload()
        if outcome.status == "rejected":
            payload["refused_by"] = "server"
        payload["caps"] = {str(k): v for k, v in self.wallet.caps().items() if v is not None}
        emit_spend_event(name, payment.payer, self.wallet.block_name, payload)
        try:
            await self.book.append(receipt)
        except Exception as exc:
            _log.warning(
                "receipt of payment %s (%s, %s) not written to %s: %s", payment.nonce, receipt.route,
                outcome.status, self.book.url[:200], exc,
            )


@asynccontextmanager
async def reporting(
    wallet: StableStudioWallet, client: AbstractAsyncContextManager[StableStudioClient]
) -> AsyncIterator[StableStudioClient]:
    """Lend `client`, emitting the event of a refusal (policy or cap: nothing signed) or of a paid job that
    failed as it passes: every step's call goes through here, so each is reported once."""
    try:
        async with client as lent:
            yield lent
    except PolicyRefused as exc:
        payload: dict[str, Any] = {"refused_by": "cap" if isinstance(exc, BudgetExceeded) else "policy",
                                   "reason": exc.reason, "message": str(exc)[:500]}
        if isinstance(exc, SpendCapExceeded):
            payload.update(
                cap=exc.cap_name, limit=exc.cap, asked=exc.asked,
                asked_usd=plain_dollars_from_atomic(exc.asked), remaining=exc.remaining,
                remaining_usd=plain_dollars_from_atomic(exc.remaining),
            )
        emit_spend_event(PAYMENT_REFUSED, wallet.public_address, wallet.block_name, payload)
        raise
    except JobFailed as exc:
        emit_spend_event(JOB_FAILED, wallet.public_address, wallet.block_name,
                         {"job_id": exc.job_id, "error": (exc.error or "")[:500]})
        raise
