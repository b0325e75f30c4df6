"""The one small error hierarchy of the protocol client.

Catch `StableStudioError` for everything, or a subclass at the level you can act on. No message here ever
contains key material: errors carry addresses, amounts, reasons and short body excerpts only.

Example:
    >>> from prefect_stablestudio.client.errors import PolicyRefused, StableStudioError
    >>> issubclass(PolicyRefused, StableStudioError)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_stablestudio.client.models import Job
    from prefect_stablestudio.client.payment import Payment

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "InvalidRequest",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "PaymentOutcomeUnknown",
    "PaymentRejected",
    "PaymentUnrecovered",
    "PolicyRefused",
    "PreflightRefused",
    "ProtocolError",
    "RateLimited",
    "ResultTooLarge",
    "RpcError",
    "StableStudioError",
    "UnexpectedMediaType",
    "UntrustedChallenge",
    "UntrustedServerValue",
    "UpstreamError",
]


class StableStudioError(Exception):
    """Base class of every error the client raises on purpose."""


class InvalidRequest(StableStudioError, ValueError):
    """The request is invalid before any money moves (local check or the server's 400).

    Attributes:
        field: dotted name of the offending field when known (e.g. "images").
        issues: the server's list of issues, when the server rejected the body.
    """

    def __init__(self, message: str, *, field: str | None = None, issues: list[Any] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.issues = issues or []


class PolicyRefused(StableStudioError):
    """The wallet policy (or a hook) refused to sign. Nothing was signed and no money moved.

    Attributes:
        reason: a short machine-readable reason such as "amount_over_cap" or "asset_not_allowed".
    """

    def __init__(self, message: str, *, reason: str = "policy") -> None:
        super().__init__(message)
        self.reason = reason


class BudgetExceeded(PolicyRefused):
    """A spend cap would be exceeded. Amounts are int atomic units (USDC has 6 decimals).

    Attributes:
        cap: the cap in atomic units.
        asked: what this call would cost.
        remaining: what is left under the cap.
    """

    def __init__(self, message: str, *, cap: int, asked: int, remaining: int) -> None:
        super().__init__(message, reason="budget_exceeded")
        self.cap = cap
        self.asked = asked
        self.remaining = remaining


class UntrustedChallenge(PolicyRefused):
    """A SIWX challenge we refuse to sign: it names another origin than the one we called (signing it could
    log us in elsewhere), or a field breaks the EIP-4361 grammar (it could add lines to the signed text).

    Attributes:
        field: the challenge field refused (e.g. "domain", "nonce"), when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, reason="untrusted_challenge")
        self.field = field


class PaymentRejected(StableStudioError):
    """The server refused the signed payment. No money moved.

    Attributes:
        reason: the server's reason, e.g. "insufficient_funds".
        payment: the refused payment, if one was signed.
    """

    def __init__(self, message: str, *, reason: str, payment: Payment | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.payment = payment


class PaymentOutcomeUnknown(StableStudioError):
    """A signed payment may or may not have moved money. Reconcile with `payment` (its nonce is unique).

    Attributes:
        payment: the signed payment; re-send it with `payment=` to resume, never sign anew.
    """

    def __init__(self, message: str, *, payment: Payment) -> None:
        super().__init__(message)
        self.payment = payment


class PaymentUnrecovered(PaymentOutcomeUnknown):
    """The money moved (the token shows the authorization used) but what it bought was not found.

    Never pay again for this call: re-sending `payment` (a rerun does) looks for the job again, and the
    payment's nonce identifies it to the server's operator. A subclass of `PaymentOutcomeUnknown`, so code
    that records and re-sends an unknown payment handles it unchanged.
    """


class AuthenticationFailed(StableStudioError):
    """The server refused our Sign-In-With-X proof (e.g. "siwx_expired").

    Attributes:
        reason: the server's error code.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class JobFailed(StableStudioError):
    """The job ended with status "failed".

    Attributes:
        job_id: the job.
        error: the server's error text.
        job: the final job record.
    """

    def __init__(self, job_id: str, error: str | None, job: Job | None = None) -> None:
        super().__init__(f"job {job_id} failed: {error or 'no reason given'}")
        self.job_id = job_id
        self.error = error
        self.job = job


class JobNotFound(StableStudioError):
    """The job does not exist or belongs to another wallet (the server does not say which). Terminal."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found or not yours")
        self.job_id = job_id


class JobTimeout(StableStudioError, TimeoutError):
    """The job did not finish before the deadline. It may still finish: poll again later.

    Attributes:
        job_id: the job.
        timeout: the deadline in seconds.
        last_job: the last state seen, if any.
    """

    def __init__(self, job_id: str, timeout: float, last_job: Job | None = None) -> None:
        super().__init__(f"job {job_id} not finished after {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout
        self.last_job = last_job


class UpstreamError(StableStudioError):
    """The server answered with an unexpected status.

    Attributes:
        status: the HTTP status (0 when no response arrived).
        body_excerpt: at most 300 characters of the body.
        code: a machine-readable error code from the body, when there is one.
    """

    def __init__(self, message: str, *, status: int, body_excerpt: str = "", code: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}): {body_excerpt}" if body_excerpt else message)
        self.status = status
        self.body_excerpt = body_excerpt
        self.code = code


class RateLimited(UpstreamError):
    """The server asked us to slow down (429, or 503 with Retry-After).

    Attributes:
        retry_after: seconds to wait, when the server said.
    """

    def __init__(
        self, message: str, *, status: int, body_excerpt: str = "", retry_after: float | None
    ) -> None:
        super().__init__(message, status=status, body_excerpt=body_excerpt)
        self.retry_after = retry_after


class ProtocolError(StableStudioError):
    """The server broke the wire protocol (undecodable header, malformed JSON, a forbidden redirect)."""


class UntrustedServerValue(ProtocolError):
    """A value the server sent is not safe to use (a job id with path characters, a result URL on another
    scheme, a malformed upload ticket). Nothing was signed on the strength of it.

    Attributes:
        field: the server's field that was refused (e.g. "jobId", "imageUrl", "clientToken").
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class ResultTooLarge(StableStudioError):
    """A result is larger than the limit for its media kind: the download stopped early, nothing was kept.

    Raised when the Content-Length announces too much (before a byte of the body is read) or when the body
    passes the limit (at most one chunk past it). Raise the limit (the wallet's `max_image_result_bytes` /
    `max_video_result_bytes`, or the flow's `max_result_bytes`) if the result is expected to be that big.

    Attributes:
        limit: the limit in bytes.
        seen: the announced length, or the bytes received when the download stopped.
        announced: True when the Content-Length alone was over the limit.
    """

    def __init__(self, message: str, *, limit: int, seen: int, announced: bool) -> None:
        super().__init__(message)
        self.limit = limit
        self.seen = seen
        self.announced = announced


class UnexpectedMediaType(ProtocolError):
    """A result's first bytes are not the media it should be (e.g. an HTML error page for an image).

    Attributes:
        expected: "image" or "video".
        head: the first bytes received (at most 16), for the log.
    """

    def __init__(self, message: str, *, expected: str, head: bytes) -> None:
        super().__init__(message)
        self.expected = expected
        self.head = head
class RpcError(ProtocolError):
    """A chain's JSON-RPC node did not answer a read (`eth_call`) usably: unreachable, an error object, a
    wrong id, or a result that is not one 32-byte hex word. Never read as a zero balance or a free nonce.

    Attributes:
        rpc_url: the node asked.
    """

    def __init__(self, message: str, *, rpc_url: str) -> None:
        super().__init__(message)
        self.rpc_url = rpc_url


class PreflightRefused(PolicyRefused):
    """A batch's quote is more than a spend cap has left or than the wallet holds; nothing was signed.

    Attributes:
        shortfalls: (what is short, e.g. "rolling 24 h cap" or "balance on eip155:8453", by how much in
            atomic units), every one that is short.
        needed: the batch's quote, atomic units.
    """

    def __init__(self, message: str, *, shortfalls: list[tuple[str, int]], needed: int) -> None:
        super().__init__(message, reason="preflight_short")
        self.shortfalls = shortfalls
        self.needed = needed
