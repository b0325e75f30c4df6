"""What a wallet is willing to sign: networks, assets, recipients, a per-call cap, a validity window.

The default policy is safe on its own: Base mainnet USDC only, at most $1 per call (the reference x402 SDK's
default), a validity window between 10 s and 1 h.

Example:
    >>> from prefect_stablestudio.client.policy import WalletPolicy
    >>> policy = WalletPolicy(max_amount_per_call=100_000)   # $0.10
    >>> policy.max_amount_per_call
    100000
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prefect_stablestudio.client.money import usd_exact_from_atomic

__all__ = [
    "BASE_MAINNET",
    "BASE_USDC",
    "IMPLAUSIBLE_PRICE_MARGIN_PERCENT",
    "TEMPO_MAINNET_CHAIN_ID",
    "TEMPO_USDC_E",
    "AssetInfo",
    "PaymentMethod",
    "WalletPolicy",
]

BASE_MAINNET = "eip155:8453"
TEMPO_MAINNET_CHAIN_ID = 4217
# USDC.e on Tempo mainnet: the token Merit's own MPP client accepts. The live challenge names the currency.
TEMPO_USDC_E = "0x20C000000000000000000000b9537d11c60E8b50"
PaymentMethod = Literal["x402", "mpp", "auto"]
IMPLAUSIBLE_PRICE_MARGIN_PERCENT = 50
"""How far above a route's published price ceiling a quote may go before it is refused as implausible.

Wide enough for prices that drift between sources (flux-2-pro/generate went from $0.06 to $0.04), narrow
enough that the router's `maxPrice` quote ($10 for an edit whose body it could not read) is never signed."""


class AssetInfo(BaseModel):
    """A token we agree to pay with, and the EIP-712 domain its authorizations are signed under."""

    model_config = ConfigDict(frozen=True)

    network: str = Field(description="CAIP-2 network, e.g. eip155:8453.")
    address: str = Field(description="The token contract (the EIP-712 verifyingContract).")
    name: str = Field(description="EIP-712 domain name, e.g. 'USD Coin'.")
    version: str = Field(description="EIP-712 domain version, e.g. '2'.")
    decimals: int = Field(default=6, description="Token decimals.")

    def matches(self, network: str, address: str) -> bool:
        """True when (network, address) names this asset (addresses compare case-insensitively)."""
        return self.network == network and self.address.lower() == address.lower()


BASE_USDC = AssetInfo(
    network=BASE_MAINNET,
    address="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    name="USD Coin",
    version="2",
)


class WalletPolicy(BaseModel):
    """The limits checked on every quote before anything is signed.

    Amounts are int atomic units (USDC: 6 decimals, so 1_000_000 is $1).
    """

    model_config = ConfigDict(frozen=True)

    allowed_networks: frozenset[str] = Field(
        default=frozenset({BASE_MAINNET}), description="CAIP-2 networks we pay on."
    )
    allowed_assets: tuple[AssetInfo, ...] = Field(default=(BASE_USDC,), description="Tokens we pay with.")
    allowed_pay_to: frozenset[str] | None = Field(
        default=None, description="Recipients we pay; None allows any valid non-zero address."
    )
    max_amount_per_call: int = Field(default=1_000_000, gt=0, description="Cap per call, atomic units.")
    min_timeout_seconds: int = Field(default=10, ge=7, description="Shortest validity window we sign.")
    max_timeout_seconds: int = Field(default=3600, gt=0, description="Longest validity window we sign.")
    payment_method: PaymentMethod = Field(
        default="x402",
        description=(
            "x402 (Base USDC), mpp (Tempo charge) or auto: of the offers the policy allows, the one with the "
            "lower amount, x402 first on ties."
        ),
    )
    mpp_currencies: frozenset[str] = Field(
        default=frozenset({TEMPO_USDC_E.lower()}), description="TIP-20 tokens we pay MPP Tempo charges in."
    )
    mpp_chain_ids: frozenset[int] = Field(
        default=frozenset({TEMPO_MAINNET_CHAIN_ID}), description="Tempo chains we pay MPP charges on."
    )
    mpp_recipients: frozenset[str] | None = Field(
        default=None, description="MPP recipients we pay; None allows any valid non-zero address."
    )
    allow_implausible_prices: bool = Field(
        default=False,
        description=(
            "Sign quotes more than IMPLAUSIBLE_PRICE_MARGIN_PERCENT above a route's published price "
            "(the per-call cap still applies). Off: such quotes are refused with reason implausible_price."
        ),
    )

    @field_validator("allowed_pay_to", "mpp_recipients")
    @classmethod
    def _lower_pay_to(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        return None if value is None else frozenset(v.lower() for v in value)

    @field_validator("mpp_currencies")
    @classmethod
    def _lower_currencies(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(v.lower() for v in value)

    def check_plausible_price(self, amount: int, published_max: int | None) -> tuple[str, str] | None:
        """Refuse a quote far above the route's published price, whatever the per-call cap.

        A quote is implausible when it is more than `IMPLAUSIBLE_PRICE_MARGIN_PERCENT` (50 %) above
        `published_max` (see `prices.published_max_price`). Unknown routes (`published_max` None) and a
        policy with `allow_implausible_prices` keep the per-call cap alone. Returns None when acceptable,
        else (reason, message) with reason "implausible_price".

        Example:
            >>> WalletPolicy(max_amount_per_call=20_000_000).check_plausible_price(10_000_000, 60_000)[0]
            'implausible_price'
        """
        if self.allow_implausible_prices or published_max is None:
            return None
        ceiling = published_max * (100 + IMPLAUSIBLE_PRICE_MARGIN_PERCENT) // 100
        if amount <= ceiling:
            return None
        return "implausible_price", (
            f"amount {usd_exact_from_atomic(amount)} is implausible for this route (published at most "
            f"{usd_exact_from_atomic(published_max)}; refused above {usd_exact_from_atomic(ceiling)} unless "
            "the wallet allows implausible prices)"
        )

    def asset_for(self, network: str, address: str) -> AssetInfo | None:
        """The allowed asset named by (network, address), if any."""
        return next((a for a in self.allowed_assets if a.matches(network, address)), None)

    def __str__(self) -> str:
        cap = usd_exact_from_atomic(self.max_amount_per_call)
        return (
            f"WalletPolicy(cap {cap} per call, networks {sorted(self.allowed_networks)}, "
            f"method {self.payment_method})"
        )
