"""Artifacts of an edit run: per edit an image (or link), per run a table, a progress bar and a summary.

Reporting never fails a run: every call is wrapped and a failure is logged as a warning. Only URLs that stay
valid are shown: a presigned URL of the result in the user's own storage (S3: up to 7 days, said so in the
description) or a link to its URI; never StableStudio's result URL, which expires in about 20 minutes. No
artifact holds anything secret: addresses, amounts, URIs, job ids and transaction hashes only.

Example:
    ```python
    from prefect_stablestudio.flows.artifacts import artifact_key

    artifact_key("stablestudio", "edit", "3f2a")    # "stablestudio-edit-3f2a"
    ```
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    acreate_image_artifact,
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from prefect_stablestudio.client.money import (
    usd_cap_from_atomic,
    usd_from_atomic,
    usd_from_dollars,
)
from prefect_stablestudio.flows.models import EditOutcome
from prefect_stablestudio.flows.receipts import Receipt
from prefect_stablestudio.flows.spend_report import daily_totals, explorer_link
from prefect_stablestudio.flows.storage import StorageOptions, presign

__all__ = [
    "BatchProgress",
    "artifact_key",
    "edit_artifact",
    "run_table_artifact",
    "summary_artifact",
]

T = TypeVar("T")
_KEY_CHARS = re.compile(r"[^a-z0-9-]+")
PRESIGN_SECONDS = 7 * 24 * 3600
SUMMARY_EDITS = 50
"""Edits shown with before/after in the summary artifact (the table artifact lists every edit)."""


def artifact_key(*parts: str) -> str:
    """A key valid for Prefect (`^[a-z0-9-]*$`, at most 100 characters) built from free text."""
    raw = "-".join(p for p in parts if p)
    return _KEY_CHARS.sub("-", raw.lower()).strip("-")[:100].rstrip("-")


async def _quietly(what: str, make: Callable[[], Awaitable[T]]) -> T | None:
    try:
        return await make()
    except Exception as exc:
        get_run_logger().warning("artifact %s not created: %s", what, exc)
        return None


async def _viewable(uri: str | None, storage_options: StorageOptions | None) -> str | None:
    if uri is None:
        return None
    if uri.startswith(("http://", "https://")):
        return uri
    return await presign(uri, storage_options, expires=PRESIGN_SECONDS)


def _viewer(uri: str | None, storage_options: StorageOptions | None) -> Callable[[], Awaitable[str | None]]:
    return lambda: _viewable(uri, storage_options)


async def edit_artifact(
    outcome: EditOutcome, *, prefix: str, storage_options: StorageOptions | None = None
) -> None:
    """The result of one edit: an image artifact when a lasting URL exists, otherwise a link to its URI."""
    if outcome.output_uri is None:
        return
    key = artifact_key(prefix, "edit", outcome.idempotency_key[:16])
    description = f"{outcome.prompt[:200]} | job {outcome.job_id} | {outcome.output_uri}"
    url = await _quietly("image url", lambda: _viewable(outcome.output_uri, storage_options))
    if url is not None:
        await _quietly(
            "image",
            lambda: acreate_image_artifact(
                url, key=key, description=f"{description} (presigned link, valid 7 days)"
            ),
        )
        return
    uri = outcome.output_uri
    link = uri if "://" in uri else f"file://{uri}"
    await _quietly(
        "link", lambda: acreate_link_artifact(link, link_text=uri, key=key, description=description)
    )


def _row(outcome: EditOutcome) -> dict[str, Any]:
    return {
        "input": ", ".join(outcome.images),
        "prompt": outcome.prompt[:200],
        "job id": outcome.job_id or "",
        "status": outcome.status,
        "cost (USD)": str(outcome.cost_usd),
        "paid in this run": "yes" if outcome.paid_now else "no",
        "tx hash": outcome.transaction or "",
        "output path": outcome.output_uri or "",
        "seconds": round(outcome.seconds, 2),
        "error": (outcome.error or "")[:300],
        "payments to reconcile": "; ".join(
            f"{p.what} nonce {p.nonce} ${p.amount_usd} ({p.status})" for p in outcome.unreconciled_payments
        ),
    }


async def run_table_artifact(outcomes: Sequence[EditOutcome], *, prefix: str) -> None:
    """One row per edit: input, prompt, job id, status, cost, tx hash, output path, seconds."""
    rows = [_row(o) for o in outcomes]
    await _quietly(
        "table",
        lambda: acreate_table_artifact(
            rows, key=artifact_key(prefix, "edits"), description="StableStudio edits of this run"
        ),
    )


async def summary_artifact(
    outcomes: Sequence[EditOutcome],
    *,
    prefix: str,
    wallet_address: str,
    spent: Decimal,
    caps: dict[str, int | None],
    remaining: dict[str, int],
    storage_options: StorageOptions | None = None,
    receipts: Sequence[Receipt] | None = None,
) -> None:
    """A markdown summary: counts, spend this run, what remains under each cap, the run's receipts (read from
    the receipts ledger, as `prefect-stablestudio spend` reads it), before/after images."""
    ok = sum(1 for o in outcomes if o.ok)
    lines = [
        "# StableStudio edits",
        "",
        f"**{ok} of {len(outcomes)} edits saved.** Wallet `{wallet_address}`.",
        "",
        f"Spent by this run: **{usd_from_dollars(spent)}** (payments signed now, upload fees included; a "
        "resumed edit was paid by an earlier run and is not counted again).",
        "",
        "| cap | limit | remaining |",
        "| --- | --- | --- |",
    ]
    for name, cap in caps.items():
        left = remaining.get(name)
        left_text = usd_from_atomic(left) if left is not None else "-"
        lines.append(f"| {name} | {usd_cap_from_atomic(cap)} | {left_text} |")
    lines.append("")
    if receipts is not None:
        lines += _receipt_lines(receipts)
    owed = [p for o in outcomes for p in o.unreconciled_payments]
    if owed:
        lines += [
            "## Payments to reconcile",
            "",
            "They moved money (settled, counted above) or may have (unknown, not counted), and bought "
            "nothing this run could use. Look each one up by its nonce.",
            "",
            "| call | nonce | amount | status | pay to |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {p.what} | `{p.nonce}` | {usd_from_dollars(p.amount_usd)} | {p.status} | `{p.pay_to}` |"
                for p in owed
            ),
            "",
        ]
    # Failures first; past SUMMARY_EDITS sections the table artifact carries the rest.
    shown = sorted(outcomes, key=lambda o: o.ok)[:SUMMARY_EDITS]
    if len(shown) < len(outcomes):
        lines += [f"{len(shown)} of {len(outcomes)} edits below (failures first); the table lists all.", ""]
    for outcome in shown:
        lines.append(f"## {outcome.images[0]}")
        lines.append("")
        lines.append(f"Prompt: {outcome.prompt[:300]}  ")
        cost = usd_from_dollars(outcome.cost_usd)
        lines.append(f"Status: **{outcome.status}**, job `{outcome.job_id or '-'}`, {cost}")
        if outcome.error:
            lines.append(f"  \nError: {outcome.error[:300]}")
        before = await _quietly("before url", _viewer(outcome.images[0], storage_options))
        after = await _quietly("after url", _viewer(outcome.output_uri, storage_options))
        if before or after:
            lines.append("")
            lines.append("| before | after |")
            lines.append("| --- | --- |")
            lines.append(
                f"| {f'![before]({before})' if before else '-'} | {f'![after]({after})' if after else '-'} |"
            )
        elif outcome.output_uri:
            lines.append(f"  \nOutput: `{outcome.output_uri}`")
        lines.append("")
    markdown = "\n".join(lines)
    await _quietly(
        "summary",
        lambda: acreate_markdown_artifact(
            markdown, key=artifact_key(prefix, "summary"), description="StableStudio run summary"
        ),
    )


def _receipt_lines(receipts: Sequence[Receipt]) -> list[str]:
    """The run's receipts from the ledger: totals per route, then up to SUMMARY_EDITS payments."""
    lines = ["## Receipts of this run", "", f"{len(receipts)} payment(s) in the receipts ledger.", ""]
    totals = daily_totals(receipts)
    if totals:
        lines += ["| day | route | payments | settled |", "| --- | --- | --- | --- |"]
        lines += [f"| {t.day} | {t.route} | {t.payments} | {usd_from_atomic(t.amount)} |" for t in totals]
        lines.append("")
    if receipts:
        lines += ["| route | amount | outcome | transaction |", "| --- | --- | --- | --- |"]
        for r in receipts[:SUMMARY_EDITS]:
            link = explorer_link(r.network, r.transaction)
            tx = f"`{r.transaction or '-'}`"
            if r.transaction and link:
                tx = f"[{r.transaction[:12]}...]({link})"
            lines.append(f"| {r.route} | {usd_from_atomic(r.amount)} | {r.outcome} | {tx} |")
        lines.append("")
    return lines


class BatchProgress:
    """A progress artifact for a batch, updated as edits finish (successes and failures alike).

    At most one update per `min_interval` seconds, and always the last one: a wave of edits finishing together
    makes one API call, not one per edit. With `log_tenths`, a log line also marks every tenth of the batch
    ("120 of 200 edits done: 118 saved, 2 failed"), for batches too large for a line per edit.
    """

    def __init__(
        self, total: int, *, prefix: str, min_interval: float = 1.0, log_tenths: bool = False
    ) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.failed = 0
        self.prefix = prefix
        self.min_interval = min_interval
        self.log_tenths = log_tenths
        self.artifact_id: UUID | None = None
        self._reported_at = -math.inf
        self._reported_done = 0
        self._logged_tenth = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the artifact at 0 %."""
        self.artifact_id = await _quietly(
            "progress",
            lambda: acreate_progress_artifact(
                0.0, key=artifact_key(self.prefix, "progress"), description=f"0 of {self.total} edits done"
            ),
        )

    async def advance(self, ok: bool = True) -> None:
        """One more edit finished (`ok`: its result is saved)."""
        self.done += 1
        self.failed += not ok
        tenth = 10 * self.done // self.total
        if self.log_tenths and tenth > self._logged_tenth:
            self._logged_tenth = tenth
            get_run_logger().info(
                "%d of %d edits done: %d saved, %d failed",
                self.done, self.total, self.done - self.failed, self.failed,
            )
        now = time.monotonic()
        if self.artifact_id is None:
            return
        if self.done < self.total and now - self._reported_at < self.min_interval:
            return
        self._reported_at = now
        async with self._lock:  # one update at a time, each with the latest count: the last one wins
            done = self.done
            if done == self._reported_done:
                return
            self._reported_done = done
            artifact_id = self.artifact_id
            await _quietly(
                "progress update",
                lambda: aupdate_progress_artifact(
                    artifact_id, 100.0 * done / self.total, description=f"{done} of {self.total} edits done"
                ),
            )
