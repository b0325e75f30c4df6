"""Cost of the client's two signatures: EIP-712 (x402 `sign_payment`) and EIP-191 (SIWX `sign_proof`).

Both are called with a `Signer`, the key form the client holds (parsed once when the client is made).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

from prefect_stablestudio.client.signer import Signer
from prefect_stablestudio.client.siwx import client_nonce_info, sign_proof
from prefect_stablestudio.client.x402 import PaymentRequired, Quote, Requirement, sign_payment

_URL = "http://127.0.0.1:8402/api/generate/flux-2-pro/edit"
_REQUIREMENT = {
    "scheme": "exact",
    "network": "eip155:8453",
    "amount": "45000",
    "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    "payTo": "0x919c2692DC6B80c70D2A3829896aC1EE59c55Acb",
    "maxTimeoutSeconds": 300,
    "extra": {"name": "USD Coin", "version": "2"},
}


def eth_keys_backend() -> str:
    """The class name of eth-keys' ECC backend (CoinCurveECCBackend when coincurve is in use)."""
    from eth_keys.backends import get_backend

    return type(get_backend()).__name__


def _per_call_ms(fn: Callable[[], Any], iterations: int, rounds: int = 5) -> float:
    """Median over `rounds` of the mean CPU time per call, in milliseconds (after a short warm-up).

    CPU time, not wall time: on a shared machine another process's burst would otherwise count as ours.
    """
    for _ in range(max(10, iterations // 20)):
        fn()
    per_round = max(1, iterations // rounds)
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(per_round):
            fn()
        samples.append((time.process_time() - start) / per_round * 1000)
    return statistics.median(samples)


def measure_signing(iterations: int) -> dict[str, Any]:
    """Milliseconds of CPU per signature: the whole client function (message built, signed, encoded)."""
    account = Signer.from_account(Account.create())
    payment_required = PaymentRequired.model_validate(
        {"x402Version": 2, "resource": {"url": _URL}, "accepts": [_REQUIREMENT]}
    )
    quote = Quote(
        requirement=Requirement.from_wire(_REQUIREMENT),
        payment_required=payment_required,
        resource_url=_URL,
        body_sha256="0" * 64,
    )
    jobs_url = "http://127.0.0.1:8402/api/jobs/abc"
    backend = eth_keys_backend()
    return {
        "sign_ms_eip712": _per_call_ms(lambda: sign_payment(account, quote), iterations),
        "sign_ms_eip191": _per_call_ms(lambda: sign_proof(account, client_nonce_info(jobs_url)), iterations),
        "eth_keys_backend": backend,
        "coincurve": backend == "CoinCurveECCBackend",
        "sign_iterations": iterations,
    }
