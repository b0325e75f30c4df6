"""Settings of the simulator: network, prices, timings, funding, faults."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prefect_stablestudio.simulator.faults import FaultRule
from prefect_stablestudio.simulator.pricing import generate_prices

USDC_DECIMALS = 6
BASE_NETWORK = "eip155:8453"
BASE_CHAIN_ID = 8453
BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
TEMPO_CHAIN_ID = 4217
TEMPO_NETWORK = "tempo:4217"
TEMPO_USDC_E = "0x20C000000000000000000000b9537d11c60E8b50"
USDC_EIP712 = {"name": "USD Coin", "version": "2"}
UPLOAD_OPERATION = "upload"


def usdc_to_atomic(amount: Decimal | str | int) -> int:
    """Dollars (Decimal or its string) to atomic USDC units, refusing fractions of a unit.

    Example:
        >>> usdc_to_atomic(Decimal("0.045"))
        45000
    """
    scaled = Decimal(amount) * (10**USDC_DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} USDC is not a whole number of atomic units")
    return int(scaled)


def atomic_to_usdc(atomic: int) -> Decimal:
    """Atomic USDC units to dollars.

    Example:
        >>> atomic_to_usdc(30000)
        Decimal('0.03')
    """
    return Decimal(atomic).scaleb(-USDC_DECIMALS).normalize()


ValidationOrder = Literal["before_quote", "after_payment"]


def default_max_prices() -> dict[str, int]:
    """The ``maxPrice`` of the routes priced from their body (atomic USDC): the quote of a body that cannot
    be priced under ``validation_order="after_payment"``. A route without one quotes its dearest tier."""
    return {"flux-2-pro/edit": 10_000_000}


def default_prices() -> dict[str, dict[str, int]]:
    """The price table: route key (``model/operation`` or ``upload``) -> price tier -> atomic USDC."""
    return {
        "flux-2-pro/edit": {"0.5 MP": 30_000, "1 MP": 45_000, "2 MP": 60_000},
        **generate_prices(),
        UPLOAD_OPERATION: {"default": 10_000},
    }


class SimulatorSettings(BaseModel):
    """Everything the simulator can be told. All money is atomic USDC (6 decimals) except where noted.

    Example:
        >>> from decimal import Decimal
        >>> s = SimulatorSettings(latency_seconds=0.2, funded={"0x" + "a" * 40: Decimal("5")})
        >>> s.default_balance
        100000000
    """

    model_config = ConfigDict(frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface to bind; loopback by default.")
    port: int = Field(default=0, ge=0, le=65535, description="Port to bind; 0 picks a free one.")
    latency_seconds: float = Field(default=5.0, ge=0.0, description="How long a job takes to complete.")
    jitter: float = Field(
        default=0.2, ge=0.0, le=1.0, description="Relative spread of job latency (seeded), e.g. 0.2 = ±20 %."
    )
    prices: dict[str, dict[str, int]] = Field(
        default_factory=default_prices,
        description="Atomic USDC per route key ('model/operation' or 'upload') and tier (resolution).",
    )
    video_latency_seconds: float = Field(
        default=60.0, ge=0.0, description="How long a video job takes (videos take minutes for real)."
    )
    latencies: dict[str, float] = Field(
        default_factory=dict,
        description="Per-route job latency in seconds ('model/operation' -> seconds), over the two above.",
    )
    pay_to: str = Field(
        default="0x919c2692DC6B80c70D2A3829896aC1EE59c55Acb",
        description="Address every quote names as payTo.",
    )
    default_balance: int = Field(
        default=100_000_000,
        ge=0,
        description="Starting balance of a wallet the ledger has not seen (atomic).",
    )
    funded: dict[str, Decimal] = Field(
        default_factory=dict, description="Starting balances in USDC (dollars) for given addresses."
    )
    result_ttl_seconds: float = Field(default=1200.0, gt=0, description="Lifetime of result image URLs.")
    upload_token_ttl_seconds: float = Field(
        default=300.0, gt=0, description="Lifetime of blob client tokens."
    )
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0, description="Largest blob a token allows.")
    max_timeout_seconds: int = Field(default=300, gt=0, description="maxTimeoutSeconds of every quote.")
    siwx_accept_client_nonce: bool = Field(
        default=True,
        description="Accept a fresh client-chosen SIWX nonce; when off only nonces the server issued pass.",
    )
    payment_identifier: bool = Field(
        default=False,
        description="Advertise the x402 payment-identifier extension and answer repeated ids from a cache.",
    )
    mpp: bool = Field(
        default=True,
        description="Offer an MPP Tempo charge (WWW-Authenticate: Payment) beside the x402 quote.",
    )
    mpp_currency: str = Field(default=TEMPO_USDC_E, description="TIP-20 token the MPP challenge asks for.")
    mpp_chain_id: int = Field(default=TEMPO_CHAIN_ID, description="Tempo chain id of the MPP challenge.")
    mpp_recipient: str | None = Field(default=None, description="MPP recipient; None uses pay_to.")
    mpp_secret: str = Field(default="simulator-mpp-secret", description="HMAC key binding challenge ids.")
    job_timestamps: bool = Field(
        default=True,
        description="Send createdAt/updatedAt in job records (the real API's are not documented: clients "
        "must work without them).",
    )
    validation_order: ValidationOrder = Field(
        default="before_quote",
        description="When a paid route checks its body. 'before_quote': an invalid body gets a 400, no "
        "quote (a deployment using the router's .validate()). 'after_payment': the router's default; a "
        "body that cannot be priced is quoted at the route's maxPrice (a static-priced route quotes "
        "without reading it), and the 400 comes after the signed request, before verify and settlement "
        "(no money moves).",
    )
    max_prices: dict[str, int] = Field(
        default_factory=default_max_prices,
        description="maxPrice per route key priced from its body, atomic USDC (used by 'after_payment').",
    )
    siwx_domain_with_port: bool = Field(
        default=True,
        description="The SIWX domain is host:port (EIP-4361's authority). False: the host name alone, as "
        "@agentcash/router writes it (the same thing on port 80/443; clients before issue 20 refuse it "
        "on other ports).",
    )
    service_name: str = Field(default="StableStudio", description="serviceName in every quote's resource.")
    seed: int = Field(default=0, description="Seed of latency jitter and rate-based faults.")
    faults: tuple[FaultRule, ...] = Field(default=(), description="The initial fault plan.")
    log_level: str = Field(default="warning", description="uvicorn log level.")

    @field_validator("funded")
    @classmethod
    def _whole_units(cls, funded: dict[str, Decimal]) -> dict[str, Decimal]:
        for amount in funded.values():
            usdc_to_atomic(amount)
        return funded

    def latency(self, route_key: str, media: str) -> float:
        """Seconds a job of ``route_key`` takes: its own entry, else the image or video latency."""
        if route_key in self.latencies:
            return self.latencies[route_key]
        return self.video_latency_seconds if media == "video" else self.latency_seconds

    def max_price(self, route_key: str) -> int:
        """The ``maxPrice`` of ``route_key``: its configured one, else its dearest tier."""
        return self.max_prices.get(route_key, max(self.prices[route_key].values()))

    def price(self, route_key: str, tier: str = "default") -> int:
        """The atomic price of ``route_key`` at ``tier``; KeyError when the table has none."""
        return self.prices[route_key][tier]
