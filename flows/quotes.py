"""What a batch of edits will cost, before anything is paid: every upload and edit priced, and where each
price came from.

402 quotes are free, so the server is asked wherever it answers before payment: an upload by its real body
(filename, type, size), an edit by its real body once its images are uploaded (a rerun whose intent record
holds their blob URLs). Before the uploads, the server refuses an edit body whose image URLs it has not seen
(400), so an edit is then priced, in this order, by:

1. `server quote, same options`: the server's quote for a body with the same options (all of them, prompt
   aside) around an image it already holds (a blob URL of this batch or from the intent store);
2. `last paid`: the last payment recorded in the intent store for an edit with the same options;
3. `published maximum`: the lower of the route's `x-payment-info` in the server's `/openapi.json` (when it
   serves one) and the client's price table (`client.prices`, the highest price any public source gave);
4. `per-call cap`: the wallet's per-call cap, the most the wallet would ever sign for one edit (also used
   when it is below the published maximum).

An edit already paid (its intent record holds a payment that was not refused, or a job) costs nothing more:
a rerun re-sends or resumes it. No quote ever calls the payment hooks or signs
(`StableStudioClient.quote_post`).

Example:
    ```python
    quote = await quote_batch(wallet, items, "make it snow", EditOptions(), store=IntentStore())
    print(quote.total_usd, [(line.what, line.amount_usd, line.source) for line in quote.lines])
    ```
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.client import tls_context
from prefect_stablestudio.client.errors import InvalidRequest, PolicyRefused
from prefect_stablestudio.client.models import EditRequest
from prefect_stablestudio.client.money import atomic_from_dollars, dollars_from_atomic
from prefect_stablestudio.client.prices import published_max_price
from prefect_stablestudio.client.studio import StableStudioClient
from prefect_stablestudio.client.x402 import Quote
from prefect_stablestudio.flows.intents import IntentStore, PaymentIntent, edit_intent_key
from prefect_stablestudio.flows.models import EditItem, EditOptions
from prefect_stablestudio.flows.storage import InputImage, StorageOptions, read_input

__all__ = [
    "CEILINGS",
    "EDIT_PATH",
    "BatchQuote",
    "PriceSource",
    "QuoteLine",
    "published_maximum",
    "quote_batch",
    "quote_generation",
]

EDIT_PATH = "/api/generate/flux-2-pro/edit"
PriceSource = Literal[
    "server quote",
    "server quote, same options",
    "last paid",
    "published maximum",
    "per-call cap",
    "already paid",
    "not payable",
]
CEILINGS: tuple[PriceSource, ...] = ("published maximum", "per-call cap")
"""Sources that bound a price from above rather than state it."""
_QUOTES_IN_FLIGHT = 8
_RECORDS_SCANNED = 200
"""The newest intent records read for probes and last-paid prices (a store may hold thousands)."""


class QuoteLine(BaseModel):
    """The price of one upload or one edit of a batch, and where it came from."""

    model_config = ConfigDict(frozen=True)

    item: int
    what: Literal["upload", "edit", "generate"]
    image: str
    amount: int
    source: PriceSource
    note: str = ""

    @property
    def amount_usd(self) -> Decimal:
        """Dollars."""
        return dollars_from_atomic(self.amount)


class BatchQuote(BaseModel):
    """Every upload and edit of a batch with its price; `total` is what running the batch would pay."""

    model_config = ConfigDict(frozen=True)

    lines: list[QuoteLine]

    @property
    def total(self) -> int:
        """Atomic units the batch would pay (already-paid edits cost nothing)."""
        return sum(line.amount for line in self.lines)

    @property
    def total_usd(self) -> Decimal:
        """Dollars."""
        return dollars_from_atomic(self.total)

    @property
    def priced_total(self) -> int:
        """Atomic units of the lines priced by a quote or a payment, i.e. all but the ceilings (`ceilings`):
        what the pre-flight holds against the caps and the balance."""
        return sum(line.amount for line in self.lines if line.source not in CEILINGS)

    @property
    def ceilings(self) -> list[QuoteLine]:
        """Lines priced only at a ceiling (published maximum, per-call cap): no quote or payment was known."""
        return [line for line in self.lines if line.source in CEILINGS]

    @property
    def already_paid(self) -> int:
        """Edits a run would not pay for again."""
        return sum(1 for line in self.lines if line.source == "already paid")

    def rows(self) -> list[dict[str, str]]:
        """One table row per line, then the total (for artifacts and the CLI)."""
        rows = [
            {
                "item": str(line.item + 1),
                "what": line.what,
                "image": line.image[:200],
                "price": f"${line.amount_usd:f}",
                "source": line.source + (f": {line.note}" if line.note else ""),
            }
            for line in self.lines
        ]
        rows.append({"item": "", "what": "total", "image": "", "price": f"${self.total_usd:f}", "source": ""})
        return rows


def _paid_already(intent: PaymentIntent | None) -> bool:
    # A refused payment moved no money (a new signature may follow); any other recorded payment or job is
    # re-sent or resumed by a rerun, never paid anew.
    if intent is None:
        return False
    return intent.job_id is not None or (intent.payment is not None and intent.status != "rejected")


def _blob_urls(intent: PaymentIntent | None, inputs: list[InputImage]) -> list[str] | None:
    if intent is None or len(intent.inputs) != len(inputs):
        return None
    urls = [record.get("blob_url", "") for record in intent.inputs]
    return urls if all(urls) else None


def _options_of(request: dict[str, Any] | None) -> dict[str, Any] | None:
    if not request:
        return None
    return {k: v for k, v in request.items() if k not in ("prompt", "images")}


async def published_maximum(base_url: str, path: str = EDIT_PATH) -> int | None:
    """The most `path` may cost by the server's `/openapi.json` (`x-payment-info`), or None when not served.

    Reads `price: {mode: "fixed", amount}` or `{mode: "dynamic", min, max}` (dollars, as numbers or strings),
    on the operation or directly as `x-payment-info: {amount | max}`.
    """
    try:
        async with httpx.AsyncClient(timeout=10.0, verify=tls_context(), follow_redirects=False) as http:
            response = await http.get(f"{base_url}/openapi.json")
        document = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    try:
        info = document["paths"][path]["post"]["x-payment-info"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    price = info.get("price", info) if isinstance(info, dict) else None
    if not isinstance(price, dict):
        return None
    value = price.get("max", price.get("amount"))
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        # The document states dollars; str() keeps a JSON number's digits without binary rounding.
        atomic = atomic_from_dollars(Decimal(str(value)).quantize(Decimal("0.000001")))
    except (ArithmeticError, ValueError):
        return None
    return atomic if atomic > 0 else None


Price = tuple[int, PriceSource, str]
"""(atomic units, where the figure came from, a note)."""


class _Pricer:
    """Asks the server for 402 quotes (a few at once) and finds fallback prices, each once per batch."""

    def __init__(self, wallet: StableStudioWallet, client: StableStudioClient, store: IntentStore) -> None:
        self.wallet, self.client, self.store = wallet, client, store
        self.gate = asyncio.Semaphore(_QUOTES_IN_FLIGHT)
        self.probe_urls: list[str] = []
        self._records: list[PaymentIntent] | None = None
        self._uploads: dict[tuple[str, str, int], asyncio.Future[Price]] = {}
        self._edits: dict[str, Price] = {}
        self._maxima: dict[str, int | None] = {}

    async def server(self, ask: Awaitable[Quote | None]) -> Price:
        """A server quote; raises what the server or the policy refused, as the paying call would."""
        async with self.gate:
            quote = await ask
        return (0, "server quote", "free") if quote is None else (quote.amount, "server quote", "")

    async def ceiling(self, path: str, why: str) -> Price:
        """The most `path` may cost: the lowest of its published maxima (the server's `/openapi.json` and the
        client's price table, `client.prices`) and the wallet's per-call cap, above which nothing is signed.

        A framework's `maxPrice` (the router's is $10 for an edit) bounds little; the price table is the
        highest price any public source gave for the route."""
        if path not in self._maxima:
            served = await published_maximum(self.client.base_url, path)
            known = [m for m in (served, published_max_price(path)) if m is not None]
            self._maxima[path] = min(known) if known else None
        maximum = self._maxima[path]
        cap = atomic_from_dollars(self.wallet.max_usd_per_call)
        if maximum is not None and maximum < cap:
            return maximum, "published maximum", why
        return cap, "per-call cap", why

    async def upload(self, image: InputImage) -> Price:
        """The price of uploading `image` (the same body is asked once per batch)."""
        body = (image.filename, image.content_type, image.size)
        if body not in self._uploads:
            self._uploads[body] = asyncio.ensure_future(self._upload(image))
        return await self._uploads[body]

    async def _upload(self, image: InputImage) -> Price:
        try:
            return await self.server(self.client.quote_upload(image.filename, image.content_type, image.size))
        except (PolicyRefused, InvalidRequest) as exc:
            return 0, "not payable", f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # a transient failure: the published ceiling keeps the pre-flight safe
            return await self.ceiling("/api/upload", f"server quote failed ({type(exc).__name__})")

    async def edit(self, request: EditRequest, options: EditOptions) -> Price:
        """The price of an edit whose images are uploaded: its own body's quote."""
        try:
            return await self.server(self.client.quote_edit(request))
        except PolicyRefused as exc:
            return 0, "not payable", f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:
            price = await self.edit_without_images(request.prompt, options)
            return price[0], price[1], price[2] or f"its own body could not be quoted ({type(exc).__name__})"

    async def _all_records(self) -> list[PaymentIntent]:
        if self._records is None:
            self._records = sorted(
                await self.store.records(limit=_RECORDS_SCANNED), key=lambda r: r.updated_at, reverse=True
            )
        return self._records

    async def edit_without_images(self, prompt: str, options: EditOptions) -> Price:
        """The price of an edit with these options whose images are not uploaded yet (once per options)."""
        key = options.model_dump_json()
        if key not in self._edits:
            self._edits[key] = await self._edit_fallback(prompt, options)
        return self._edits[key]

    async def _edit_fallback(self, prompt: str, options: EditOptions) -> Price:
        params = options.request_params()
        records = await self._all_records()
        probes = [*self.probe_urls, *(r.get("blob_url", "") for rec in records for r in rec.inputs)]
        for probe in [p for p in dict.fromkeys(probes) if p][:3]:  # an old blob may be gone: try a few
            request = EditRequest(prompt=prompt, images=[probe], **params)
            try:
                amount, _, note = await self.server(self.client.quote_edit(request))
            except PolicyRefused as exc:
                return 0, "not payable", f"{type(exc).__name__}: {exc}"[:300]
            except Exception:  # noqa: S112 - the next probe, or the next source, answers instead
                continue
            return amount, "server quote, same options", note
        # The same options as the recorded body (prompt and images aside), compared in the wire's terms.
        wanted = _options_of(EditRequest(prompt=prompt, images=["https://x.invalid/a.png"], **params).body())
        for record in records:
            if (
                record.payment is not None
                and record.status != "rejected"
                and _options_of(record.request) == wanted
            ):
                return record.payment.amount, "last paid", f"on {record.updated_at:%Y-%m-%d %H:%M} UTC"
        return await self.ceiling(EDIT_PATH, "")


async def _item_lines(
    pricer: _Pricer,
    index: int,
    item: EditItem,
    prompt: str | None,
    options: EditOptions,
    storage_options: StorageOptions | None,
    user_key: str | None,
) -> tuple[list[QuoteLine], tuple[str, list[InputImage]] | None]:
    """The lines of one item, and (prompt, inputs) when its edit still needs a fallback price."""
    first = item.images[0]
    item_prompt = item.prompt or prompt or ""
    if not item_prompt:
        return [
            QuoteLine(item=index, what="edit", image=first, amount=0, source="not payable", note="no prompt")
        ], None
    try:
        inputs = [await read_input(uri, storage_options) for uri in item.images]
    except Exception as exc:  # the edit fails the same way before paying anything
        note = f"unreadable: {type(exc).__name__}: {exc}"[:300]
        return [
            QuoteLine(item=index, what="edit", image=first, amount=0, source="not payable", note=note)
        ], None
    wallet = pricer.wallet
    intent = await pricer.store.get(
        edit_intent_key(wallet.public_address, inputs, item_prompt, options, user_key)
    )
    if _paid_already(intent):
        return [QuoteLine(item=index, what="edit", image=first, amount=0, source="already paid")], None
    blob_urls = _blob_urls(intent, inputs)
    if blob_urls is not None:
        pricer.probe_urls.extend(blob_urls)
        request = EditRequest(prompt=item_prompt, images=blob_urls, **options.request_params())
        amount, source, note = await pricer.edit(request, options)
        return [
            QuoteLine(item=index, what="edit", image=first, amount=amount, source=source, note=note)
        ], None
    lines = []
    for image in inputs:
        amount, source, note = await pricer.upload(image)
        lines.append(
            QuoteLine(item=index, what="upload", image=image.uri, amount=amount, source=source, note=note)
        )
    return lines, (item_prompt, inputs)


async def quote_batch(
    wallet: StableStudioWallet,
    items: Sequence[EditItem | str],
    prompt: str | None,
    options: EditOptions,
    *,
    store: IntentStore,
    storage_options: StorageOptions | None = None,
    user_key: str | None = None,
) -> BatchQuote:
    """Price every upload and edit `edit_images` would pay for these arguments; nothing is signed or paid.

    An item the batch would refuse before paying (no prompt, an unreadable input, a body the server or the
    policy refuses) is listed as "not payable" at $0 with the reason, as it fails alone in the batch.

    Raises:
        RuntimeError: a signature was made while quoting (a bug: never expected).
    """
    edits = [EditItem.model_validate(item) for item in items]  # a bare string is one image
    async with wallet.get_client(enforce_budget=False) as client:
        pricer = _Pricer(wallet, client, store)
        per_item = await asyncio.gather(
            *(
                _item_lines(pricer, i, item, prompt, options, storage_options, user_key)
                for i, item in enumerate(edits)
            )
        )
        lines = [line for item_lines, _ in per_item for line in item_lines]
        # Edits whose images are not uploaded yet: priced after the others, whose blob URLs can be probes.
        for index, (_, pending) in enumerate(per_item):
            if pending is not None:
                amount, source, note = await pricer.edit_without_images(pending[0], options)
                lines.append(
                    QuoteLine(
                        item=index,
                        what="edit",
                        image=pending[1][0].uri,
                        amount=amount,
                        source=source,
                        note=note,
                    )
                )
        if client.stats.payments_signed:
            raise RuntimeError("a quote signed a payment: this must never happen")
    lines.sort(key=lambda line: (line.item, line.what != "upload"))
    return BatchQuote(lines=lines)


async def quote_generation(
    wallet: StableStudioWallet, path: str, body: dict[str, Any] | None, uploads: Sequence[InputImage]
) -> BatchQuote:
    """Price one generate call and the uploads it needs first; nothing is signed or paid.

    `body` is the request when it can be built (no input images, or their blob URLs are known): its own 402
    prices it. Otherwise (images still to upload) the route's published maximum, else the per-call cap,
    bounds it (a ceiling, not counted by the pre-flight).

    Raises:
        InvalidRequest, PolicyRefused: the server or the policy refuses the body (nothing paid).
    """
    async with wallet.get_client(enforce_budget=False) as client:
        pricer = _Pricer(wallet, client, IntentStore())
        lines = []
        for image in uploads:
            amount, source, note = await pricer.upload(image)
            lines.append(
                QuoteLine(item=0, what="upload", image=image.uri, amount=amount, source=source, note=note)
            )
        try:
            if body is None:
                raise LookupError("its input images are not uploaded yet")
            amount, source, note = await pricer.server(client.quote_post(path, body))
        except (InvalidRequest, PolicyRefused):
            raise
        except Exception as exc:  # images to upload first, or a transient failure: the ceiling bounds it
            amount, source, note = await pricer.ceiling(
                path,
                str(exc) if isinstance(exc, LookupError) else f"server quote failed ({type(exc).__name__})",
            )
        lines.append(QuoteLine(item=0, what="generate", image=path, amount=amount, source=source, note=note))
        if client.stats.payments_signed:
            raise RuntimeError("a quote signed a payment: this must never happen")
    return BatchQuote(lines=lines)
