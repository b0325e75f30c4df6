"""Flow parameters and results as pydantic models: the Prefect UI renders them as forms.

Example:
    ```python
    from prefect_stablestudio.flows.models import EditItem, EditOptions

    items = [EditItem(images=["s3://photos/cat.png"]), EditItem(images=["s3://photos/dog.png"], prompt="...")]
    options = EditOptions(resolution="2 MP", output_format="png")
    ```
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefect_stablestudio.client.models import (
    MAX_FLUX_IMAGES,
    MAX_PROMPT_CHARS,
    AspectRatio,
    OutputFormat,
    OutputQuality,
    Resolution,
    SafetyTolerance,
)
from prefect_stablestudio.client.money import dollars_from_atomic
from prefect_stablestudio.client.payment import Payment

__all__ = [
    "BatchResult",
    "EditItem",
    "EditOptions",
    "EditOutcome",
    "EditStatus",
    "SavedResult",
    "UnreconciledPayment",
]

EditStatus = Literal["complete", "failed", "refused", "unknown"]


class EditOptions(BaseModel):
    """Flux 2 Pro edit settings other than the prompt and the images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aspect_ratio: AspectRatio = Field(default="1:1", title="Aspect ratio", description="Output aspect ratio.")
    resolution: Resolution = Field(
        default="1 MP", title="Resolution", description="Output size; larger costs more."
    )
    output_format: OutputFormat = Field(default="png", title="Output format", description="Image format.")
    output_quality: OutputQuality = Field(
        default=80, title="Output quality", description="Compression quality (jpg, webp)."
    )
    safety_tolerance: SafetyTolerance = Field(
        default=2, title="Safety tolerance", description="1 is strictest, 5 most permissive."
    )
    prompt_upsampling: bool = Field(
        default=False, title="Prompt upsampling", description="Let the model rewrite the prompt."
    )
    seed: int | None = Field(default=None, title="Seed", description="Fixed seed for reproducible output.")

    def request_params(self) -> dict[str, Any]:
        """The request fields as sent (the idempotency key hashes these)."""
        return self.model_dump(mode="json")


class EditItem(BaseModel):
    """One edit of a batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: list[str] = Field(
        min_length=1,
        max_length=MAX_FLUX_IMAGES,
        title="Images",
        description="Local paths or fsspec URLs (s3://bucket/key); the first one names the output.",
    )
    prompt: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, title="Prompt", description="Prompt; default: the batch's."
    )
    output_name: str | None = Field(
        default=None, title="Output file name", description="Default: <first image's stem>-edited.<format>."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_uri(cls, data: Any) -> Any:
        # A bare string is the common case: one image, the batch's prompt.
        return {"images": [data]} if isinstance(data, str) else data


class SavedResult(BaseModel):
    """Where a result was written, and the checksum of the bytes written."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    size: int
    content_type: str


class UnreconciledPayment(BaseModel):
    """A payment that moved money, or may have, and bought nothing this run could use: reconcile it by nonce.

    Example:
        ```python
        for p in result.unreconciled_payments:
            print(p.what, p.nonce, p.amount_usd, p.status)
        ```
    """

    model_config = ConfigDict(frozen=True)

    what: Literal["upload", "edit"] = Field(description="The call the payment was for.")
    nonce: str = Field(description="The EIP-3009 nonce: unique, so it identifies the payment on chain.")
    amount_usd: Decimal
    pay_to: str
    resource_url: str
    status: Literal["settled", "unknown"] = Field(description="settled: money moved; unknown: it may have.")
    reason: str = ""

    @classmethod
    def of(
        cls,
        payment: Payment,
        *,
        what: Literal["upload", "edit"],
        status: Literal["settled", "unknown"],
        reason: str,
    ) -> UnreconciledPayment:
        """The record of a signed payment (never its header: only nonce, amount and addresses)."""
        return cls(
            what=what, nonce=payment.nonce, amount_usd=dollars_from_atomic(payment.amount),
            pay_to=payment.pay_to,
            resource_url=payment.resource_url, status=status, reason=reason[:300],
        )


class EditOutcome(BaseModel):
    """What happened to one edit (a row of the run's table)."""

    images: list[str]
    prompt: str
    status: EditStatus
    idempotency_key: str
    job_id: str | None = None
    cost_usd: Decimal = Field(default=Decimal(0), description="Price of the edit (paid now or earlier).")
    paid_now: bool = Field(default=False, description="True when this run signed the payment.")
    upload_cost_usd: Decimal = Field(default=Decimal(0), description="Upload fees paid by this run.")
    transaction: str | None = None
    output_uri: str | None = None
    sha256: str | None = None
    seconds: float = 0.0
    error: str | None = None
    unreconciled_payments: list[UnreconciledPayment] = Field(
        default_factory=list, description="Payments that moved (or may have moved) money for nothing usable."
    )

    @property
    def ok(self) -> bool:
        """True when the result is saved."""
        return self.status == "complete"


class BatchResult(BaseModel):
    """All outcomes of a batch, successes and failures alike."""

    outcomes: list[EditOutcome]
    spent_usd: Decimal = Field(description="Money this run moved: new edit payments plus upload fees.")
    unreconciled_payments: list[UnreconciledPayment] = Field(
        default_factory=list,
        description="Every payment of the run to reconcile by its nonce (the settled ones count in spent).",
    )
    quoted_usd: Decimal | None = Field(
        default=None, description="The batch's quote before paying (when quoted: pre-flight or dry run)."
    )

    @property
    def succeeded(self) -> list[EditOutcome]:
        """The saved edits."""
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[EditOutcome]:
        """The edits that did not produce a saved result."""
        return [o for o in self.outcomes if not o.ok]
