"""stablestudio: a Prefect-free async client for StableStudio (Flux 2 Pro edit), paid per call with x402.

Example:
    >>> from stablestudio import EditRequest, WalletPolicy
    >>> EditRequest(prompt="Make the sky pink", images=["https://b.example/a.png"]).resolution
    '1 MP'
"""

from stablestudio.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    InvalidRequest,
    JobFailed,
    JobNotFound,
    JobTimeout,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyRefused,
    ProtocolError,
    RateLimited,
    StableStudioError,
    UntrustedChallenge,
    UpstreamError,
)
from stablestudio.models import (
    EditRequest,
    Job,
    JobResult,
    SubmittedJob,
    UploadResult,
    UploadTicket,
)
from stablestudio.money import format_usd, to_atomic, to_dollars
from stablestudio.payment import NoHooks, Payment, PaymentHooks, PaymentOutcome, Settlement
from stablestudio.policy import BASE_USDC, AssetInfo, WalletPolicy
from stablestudio.x402 import PaymentRequired, Quote, Requirement

__all__ = [
    "BASE_USDC",
    "AssetInfo",
    "AuthenticationFailed",
    "BudgetExceeded",
    "EditRequest",
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
    "PolicyRefused",
    "ProtocolError",
    "Quote",
    "RateLimited",
    "Requirement",
    "Settlement",
    "StableStudioError",
    "SubmittedJob",
    "UntrustedChallenge",
    "UploadResult",
    "UploadTicket",
    "UpstreamError",
    "WalletPolicy",
    "format_usd",
    "to_atomic",
    "to_dollars",
]
