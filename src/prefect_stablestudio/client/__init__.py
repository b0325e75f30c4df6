"""stablestudio: a Prefect-free async client for StableStudio (Flux 2 Pro edit), paid per call with x402.

Example:
    ```python
    from prefect_stablestudio.client import EditRequest, StableStudioClient

    async with StableStudioClient(private_key) as client:
        blob_url = await client.upload("photo.png")
        job = await client.submit_edit(EditRequest(prompt="make it snow", images=[blob_url]))
        result = await client.wait_for_job(job.job_id)
    ```
"""

from prefect_stablestudio.client._http import ClientStats, tls_context
from prefect_stablestudio.client.catalog import (
    CATALOG,
    CatalogEntry,
    GenerationRequest,
    build_request,
    catalog_entry,
)
from prefect_stablestudio.client.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    InvalidRequest,
    JobFailed,
    JobNotFound,
    JobTimeout,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PaymentUnrecovered,
    PolicyRefused,
    ProtocolError,
    RateLimited,
    ResultTooLarge,
    StableStudioError,
    UnexpectedMediaType,
    UntrustedChallenge,
    UntrustedServerValue,
    UpstreamError,
)
from prefect_stablestudio.client.models import (
    EditRequest,
    Job,
    JobResult,
    SubmittedJob,
    UploadResult,
    UploadTicket,
)
from prefect_stablestudio.client.money import atomic_from_dollars, dollars_from_atomic, usd_exact_from_atomic
from prefect_stablestudio.client.payment import NoHooks, Payment, PaymentHooks, PaymentOutcome, Settlement
from prefect_stablestudio.client.policy import BASE_USDC, AssetInfo, WalletPolicy
from prefect_stablestudio.client.studio import StableStudioClient
from prefect_stablestudio.client.x402 import PaymentRequired, Quote, Requirement

__all__ = [
    "BASE_USDC",
    "CATALOG",
    "AssetInfo",
    "AuthenticationFailed",
    "BudgetExceeded",
    "CatalogEntry",
    "ClientStats",
    "EditRequest",
    "GenerationRequest",
    "InvalidRequest",
    "Job",
    "JobFailed",
    "JobNotFound",
    "JobResult",
    "JobTimeout",
    "NoHooks",
    "Payment",
    "PaymentHooks",
    "PaymentOutcome",
    "PaymentOutcomeUnknown",
    "PaymentRejected",
    "PaymentRequired",
    "PaymentUnrecovered",
    "PolicyRefused",
    "ProtocolError",
    "Quote",
    "RateLimited",
    "Requirement",
    "ResultTooLarge",
    "Settlement",
    "StableStudioClient",
    "StableStudioError",
    "SubmittedJob",
    "UnexpectedMediaType",
    "UntrustedChallenge",
    "UntrustedServerValue",
    "UploadResult",
    "UploadTicket",
    "UpstreamError",
    "WalletPolicy",
    "atomic_from_dollars",
    "build_request",
    "catalog_entry",
    "dollars_from_atomic",
    "tls_context",
    "usd_exact_from_atomic",
]
