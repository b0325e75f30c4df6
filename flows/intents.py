"""Payment intents: the record that makes a paid edit happen at most once across retries, crashes and reruns.

Prefect writes a task's cache record only after the task returns, so a crash between paying and returning
pays again on retry (2 payments when we tried: docs/decisions.md). Instead, every paid edit has an idempotency
key derived from its inputs, and a JSON record under that key moves through

    signed (the authorization, persisted BEFORE it is sent) -> submitted (job id, persisted BEFORE polling)
        -> complete (output URI + sha256)

with `rejected` (no money moved: a new signature is allowed), `unknown` (money may have moved: only the
SAME signed authorization is ever re-sent) and `failed` (the job failed after payment) on the side. A retry or
rerun reads the record first and resumes from it.

The first signature pins the recipient, asset and network of the edit: a later signature for the same key
(after a refusal) is refused with `PolicyRefused(reason="pay_to_changed")` if the server now quotes other
ones, so a changed recipient is never paid silently. Paying it deliberately takes a new idempotency key.

Records live on any fsspec URL: by default under PREFECT_HOME (one machine), or s3://bucket/prefix so workers
on other machines share them. A local record file is append-only (one JSON document per line, each append a
single write; the last complete line is the record, so a torn append leaves the one before); S3 object PUTs
are atomic. A record holds the signed authorization (a bearer instrument for that one payment
to that one recipient), never the private key; local files are created readable by their owner only.

An upload has a record of its own (in the `uploads` folder, keyed by wallet, input and name): its paid ticket
(`uploadId`, `clientToken`, `pathname`, `expiresAt`) is written as soon as it arrives, before the blob PUT, so
a retry or a rerun PUTs and confirms with it while its token is valid instead of paying again (status
`submitted`: ticket held; `complete`: blob URL in `inputs`).

Within one batch, edits with the same key are serialised (the second reuses the first's job). Two separate
runs working on the same key at the same instant are not: the store has no lock. Keep such runs apart (a
deployment concurrency limit, or distinct inputs).

Example:
    ```python
    store = IntentStore("s3://my-bucket/stablestudio-intents")
    key = intent_key("edit", wallet.address, inputs=[("s3://b/cat.png", sha)], params={"prompt": "..."})
    intent = await store.get(key)
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from fsspec.core import url_to_fs
from pydantic import BaseModel, ConfigDict, Field

from prefect_stablestudio.client.errors import PolicyRefused
from prefect_stablestudio.client.models import UploadTicket
from prefect_stablestudio.client.payment import Payment, PaymentOutcome
from prefect_stablestudio.client.x402 import Quote
from prefect_stablestudio.flows.models import EditOptions
from prefect_stablestudio.flows.storage import InputImage, StorageOptions, local_path

__all__ = [
    "IntentHooks",
    "IntentStatus",
    "IntentStore",
    "PaymentIntent",
    "PaymentTerms",
    "default_intent_url",
    "edit_intent_key",
    "intent_key",
]

IntentStatus = Literal["new", "signed", "submitted", "unknown", "rejected", "complete", "failed"]

_KEY_VERSION = 1


def intent_key(
    operation: str,
    wallet: str,
    *,
    inputs: Sequence[tuple[str, str]],
    params: dict[str, Any],
    user_key: str | None = None,
) -> str:
    """A deterministic idempotency key: the same inputs give the same key in any process, on any day.

    Args:
        operation: e.g. "flux-2-pro/edit".
        wallet: the paying address (a job can only be resumed by the wallet that paid for it).
        inputs: (uri, sha256) per input image: a changed file at the same URI is a new edit.
        params: the request parameters other than the image URLs (prompt, aspect ratio, seed, ...).
        user_key: optional caller key, to ask deliberately for a second, paid, edit of the same inputs.
    """
    canonical = json.dumps(
        {
            "v": _KEY_VERSION,
            "op": operation,
            "wallet": wallet.lower(),
            "inputs": [list(pair) for pair in inputs],
            "params": params,
            "user_key": user_key,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def edit_intent_key(
    wallet: str, inputs: list[InputImage], prompt: str, options: EditOptions, user_key: str | None
) -> str:
    """The idempotency key of one Flux 2 Pro edit: its wallet, inputs (URI and sha256), prompt, options and
    user key."""
    return intent_key(
        "flux-2-pro/edit",
        wallet,
        inputs=[(i.uri, i.sha256) for i in inputs],
        params={"prompt": prompt, **options.request_params()},
        user_key=user_key,
    )


def default_intent_url() -> str:
    """`$PREFECT_HOME/stablestudio/intents`: shared by the runs of one machine."""
    from prefect.settings import PREFECT_HOME

    return str(PREFECT_HOME.value() / "stablestudio" / "intents")


class PaymentTerms(BaseModel):
    """Whom, in what and where an edit pays: pinned by its first signature."""

    model_config = ConfigDict(frozen=True)

    pay_to: str
    asset: str
    network: str

    @classmethod
    def of(cls, payment: Payment) -> PaymentTerms:
        """The terms a signed payment was made on."""
        return cls(pay_to=payment.pay_to, asset=payment.asset, network=payment.network)

    def differences(self, quote: Quote) -> list[str]:
        """What a new quote changes, e.g. `["payTo 0xA.. -> 0xB.."]`; empty when it keeps the terms."""
        now = quote.requirement
        pairs = (("payTo", self.pay_to, now.pay_to), ("asset", self.asset, now.asset),
                 ("network", self.network, now.network))
        return [f"{name} {old} -> {new}" for name, old, new in pairs if old.lower() != new.lower()]


class PaymentIntent(BaseModel):
    """The persisted state of one paid edit."""

    model_config = ConfigDict(extra="ignore")

    key: str
    wallet: str
    status: IntentStatus = "new"
    inputs: list[dict[str, str]] = Field(default_factory=list, description="uri, sha256, blob_url per input.")
    request: dict[str, Any] | None = Field(default=None, description="The exact edit body (with blob URLs).")
    payment: Payment | None = None
    job_id: str | None = None
    transaction: str | None = None
    reason: str | None = None
    chain_state: str | None = Field(
        default=None,
        description=(
            "What the token said when this edit's payment `chain_nonce` had an ambiguous outcome: settled, "
            "still_valid, expired_unused (then replaced by a new signature) or unknown (not asked)."
        ),
    )
    chain_nonce: str | None = Field(default=None, description="The payment nonce `chain_state` is about.")
    output_uri: str | None = None
    output_sha256: str | None = None
    pinned: PaymentTerms | None = Field(
        default=None, description="Recipient, asset and network of the first signature under this key."
    )
    ticket: UploadTicket | None = Field(
        default=None, description="An upload's paid ticket, persisted before its PUT (upload records only)."
    )
    tickets_bought: int = Field(
        default=0, description="Upload tickets paid for under this key; more than one is a further fee."
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class IntentStore:
    """Payment intents as JSON files on an fsspec URL.

    Local folders are read and written directly in the event loop, by appending a line per write (the last
    whole line is the record): through a worker thread and fsspec each write cost ~0.3 ms of CPU, a write
    then rename ~0.1 ms alone and up to ~0.6 ms of kernel time under load (ext4 flushes a file renamed over
    another), an append ~0.01 ms (bench/). Other URLs (S3, ...) go through fsspec in a worker thread.

    Args:
        url: a folder (local path or fsspec URL); default `default_intent_url()`.
        storage_options: fsspec options for `url`.
    """

    def __init__(self, url: str | None = None, storage_options: StorageOptions | None = None) -> None:
        self.url = (url or default_intent_url()).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._local_dir = local_path(self.url)

    def uploads(self) -> IntentStore:
        """The store of upload records (paid tickets), in the `uploads` folder beside the edits' records."""
        return IntentStore(f"{self.url}/uploads", self.storage_options)

    def _path(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError("an intent key is 64 lowercase hex digits")
        if self._local_dir is not None:
            return os.path.join(self._local_dir, f"{key}.json")
        return f"{self.url}/{key}.json"

    def _read(self, key: str) -> PaymentIntent | None:
        fs, path = url_to_fs(self._path(key), **self.storage_options)
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return None
        return PaymentIntent.model_validate_json(raw)

    def _write(self, intent: PaymentIntent) -> None:
        fs, path = url_to_fs(self._path(intent.key), **self.storage_options)
        # An object PUT is atomic on S3 and its kin.
        fs.pipe_file(path, intent.model_dump_json(indent=1).encode("utf-8"))

    def _read_local(self, key: str) -> PaymentIntent | None:
        try:
            with open(self._path(key), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        if not raw.strip():
            # Created, not yet written (a writer between open and write, or killed there): nothing recorded,
            # and an edit's payment is only sent once a record of it is written whole.
            return None
        return _last_record(raw, key)

    def _write_local(self, intent: PaymentIntent) -> None:
        path = self._path(intent.key)
        # The newline goes first: an append after a torn one starts a line of its own.
        line = b"\n" + intent.model_dump_json().encode("utf-8")
        # Final records are appended too: compacting (write, then rename over the log) cost ~0.3 ms of CPU
        # per edit on ext4, which flushes a file renamed over one with unwritten data (bench/). A record
        # stays a few lines (~3 kB) long.
        _append(path, line)

    async def get(self, key: str) -> PaymentIntent | None:
        """The record for `key`, or None."""
        if self._local_dir is not None:
            return self._read_local(key)
        return await asyncio.to_thread(self._read, key)

    async def records(self, limit: int | None = None) -> list[PaymentIntent]:
        """The records in the store, the most recently written first (at most `limit` of them): for price
        look-ups and reports, not per edit.
        """

        def scan() -> list[PaymentIntent]:
            fs, root = url_to_fs(self.url, **self.storage_options)
            try:
                listing = fs.ls(root, detail=True)
            except FileNotFoundError:
                return []
            files = [e for e in listing if e.get("type") == "file" and str(e["name"]).endswith(".json")]
            files.sort(key=_written, reverse=True)
            found: list[PaymentIntent] = []
            for entry in files[:limit]:
                key = os.path.basename(str(entry["name"]))[: -len(".json")]
                if _KEY.fullmatch(key):
                    record = self._read_local(key) if self._local_dir is not None else self._read(key)
                    if record is not None:
                        found.append(record)
            return found

        return await asyncio.to_thread(scan)

    async def put(self, intent: PaymentIntent) -> PaymentIntent:
        """Write (replace) the record; returns it with `updated_at` set."""
        intent = intent.model_copy(update={"updated_at": datetime.now(UTC)})
        if self._local_dir is not None:
            self._write_local(intent)
        else:
            await asyncio.to_thread(self._write, intent)
        return intent


_KEY = re.compile(r"[0-9a-f]{64}")


def _written(entry: dict[str, Any]) -> float:
    """When an fsspec listing entry was last written (local `mtime`, S3 `LastModified`), as a timestamp."""
    value = entry.get("mtime", entry.get("LastModified"))
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) else 0.0


def _append(path: str, data: bytes) -> None:
    """One write(2) of `data` at the end of `path` (a few kB: a local filesystem writes it whole), which is
    created owner-only, in a folder made when missing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):  # never seen on a local filesystem; a torn line is skipped by readers
        raise OSError(f"short write of an intent record ({written} of {len(data)} bytes)")


def _last_record(raw: bytes, key: str) -> PaymentIntent:
    """The record of a local file: its last complete line (or its only document, as written before appends).

    Raises:
        ValueError: nothing in the file parses; never read as "no record", which could pay again.
    """
    if raw.startswith(b"{\n"):  # one indented document, as earlier versions wrote
        return PaymentIntent.model_validate_json(raw)
    for line in reversed(raw.splitlines()):
        if line.strip():
            try:
                return PaymentIntent.model_validate_json(line)
            except ValueError:
                continue  # a torn last append: the line before it is the record
    raise ValueError(f"intent record {key} is unreadable: move it aside only after reconciling its payment")


class IntentHooks:
    """Payment hooks that persist the signed payment before it is sent, and its outcome after.

    A failed write in `after_signing` raises, and the client then sends nothing: money never moves without a
    record that lets a later attempt find it.

    With `defer_settled`, a settled outcome is only kept in memory: the caller writes it with the job id an
    instant later (one write, not two), and calls `flush()` if anything goes wrong before that. A refused or
    unknown outcome is always written at once.
    """

    def __init__(self, store: IntentStore, intent: PaymentIntent, *, defer_settled: bool = False) -> None:
        self.store = store
        self.intent = intent
        self.defer_settled = defer_settled
        self._unwritten = False

    async def flush(self) -> None:
        """Write a deferred settled outcome now (nothing to do when there is none)."""
        if self._unwritten:
            self.intent = await self.store.put(self.intent)
            self._unwritten = False

    async def before_signing(self, quote: Quote) -> None:
        """Refuse to sign for other terms than the edit's earlier signature (the budget reserves here too).

        Raises:
            PolicyRefused: reason "pay_to_changed"; nothing is signed.
        """
        pinned = self.intent.pinned or (PaymentTerms.of(self.intent.payment) if self.intent.payment else None)
        if pinned is None:
            return
        changed = pinned.differences(quote)
        if changed:
            raise PolicyRefused(
                f"this edit's earlier payment was signed for payTo {pinned.pay_to} ({pinned.asset} on "
                f"{pinned.network}); the server now asks for {', '.join(changed)}. Nothing was signed. "
                f"To pay the new recipient {quote.pay_to} deliberately, run again with a new idempotency "
                "key; list the recipients you trust in the wallet's payTo allow-list (allowed_pay_to)",
                reason="pay_to_changed",
            )

    async def after_signing(self, payment: Payment) -> None:
        """Persist the signed payment (status `signed`) and pin its terms."""
        pinned = self.intent.pinned or PaymentTerms.of(payment)
        self.intent = await self.store.put(
            self.intent.model_copy(
                update={"payment": payment, "status": "signed", "reason": None, "pinned": pinned}
            )
        )

    async def after_outcome(self, payment: Payment, outcome: PaymentOutcome) -> None:
        """Persist what happened to the payment."""
        update: dict[str, Any] = {"payment": payment}
        if outcome.status == "rejected":
            update.update(status="rejected", reason=outcome.reason)
        elif outcome.status == "unknown":
            update.update(status="unknown", reason=outcome.reason)
        elif outcome.settlement is not None and outcome.settlement.transaction:
            update["transaction"] = outcome.settlement.transaction
        if outcome.chain_state is not None:
            update.update(chain_state=outcome.chain_state, chain_nonce=payment.nonce, reason=outcome.reason)
        if outcome.status == "settled" and self.defer_settled:
            self.intent, self._unwritten = self.intent.model_copy(update=update), True
            return
        self.intent = await self.store.put(self.intent.model_copy(update=update))
