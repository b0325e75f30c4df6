"""The `StableStudioWallet` block: a hot wallet, what it may pay, and its spend caps.

The block holds configuration only. Spend so far lives in Prefect's global concurrency limits
(`prefect_stablestudio.blocks.budget`), because a block is a last-writer-wins document and cannot count
concurrent payments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from eth_account import Account
from prefect.blocks.abstract import CredentialsBlock
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from prefect_stablestudio.blocks.budget import CapName, SpendBudget, current_flow_run_id
from prefect_stablestudio.blocks.payment_guard import PaymentGuard
from prefect_stablestudio.client.downloads import MAX_IMAGE_RESULT_BYTES, MAX_VIDEO_RESULT_BYTES, ResultMedia
from prefect_stablestudio.client.money import atomic_from_dollars
from prefect_stablestudio.client.policy import (
    BASE_MAINNET,
    BASE_USDC,
    TEMPO_MAINNET_CHAIN_ID,
    TEMPO_USDC_E,
    WalletPolicy,
)

if TYPE_CHECKING:
    from prefect_stablestudio.client.payment import PaymentHooks
    from prefect_stablestudio.client.studio import StableStudioClient

__all__ = ["LOGO_PATH", "PROJECT_URL", "StableStudioWallet", "WalletBalance"]

PROJECT_URL = "https://github.com/prefect-stablestudio/prefect-stablestudio"
LOGO_PATH = Path(__file__).with_name("logo.png")
"""The block's logo, shipped in the package (the suite checks this file, offline)."""

_ENV_PREFIX = "STABLESTUDIO_"


def _usd_field(default: Decimal | None, title: str, description: str) -> Any:
    return Field(default=default, title=title, description=description, ge=Decimal(0))


@dataclass(frozen=True)
class WalletBalance:
    """The wallet's balance of one asset on one network, atomic units; `amount` None: not checked (no RPC)."""

    network: str
    asset: str
    amount: int | None
    rpc_url: str | None


class StableStudioWallet(CredentialsBlock):
    """A wallet that pays StableStudio per call (x402, USDC on Base), with spend caps enforced by Prefect.

    Use a dedicated hot wallet funded no higher than the lifetime cap: anyone with read access to the Prefect
    API can load the block with its secret.

    Example:
        Load a saved wallet and edit an image:
        ```python
        from prefect_stablestudio import StableStudioWallet
        from prefect_stablestudio.client import EditRequest

        wallet = StableStudioWallet.load("BLOCK_NAME")
        async with wallet.get_client() as client:
            job = await client.submit_edit(EditRequest(prompt="make it snow", images=[blob_url]))
        ```
    """

    _block_type_name: ClassVar[str] = "StableStudio Wallet"
    _block_type_slug: ClassVar[str] = "stablestudio-wallet"
    _logo_url: ClassVar[str] = f"{PROJECT_URL}/raw/main/blocks/logo.png"  # type: ignore[assignment]
    _documentation_url: ClassVar[str] = f"{PROJECT_URL}#readme"  # type: ignore[assignment]
    _description: ClassVar[str] = (
        "A hot wallet that pays StableStudio (Flux 2 Pro image edits) per call in USDC, "
        "with per-call, per-flow-run, rolling 24 h and lifetime spend caps."
    )

    # A validation error must never echo the key it was given.
    model_config = ConfigDict(hide_input_in_errors=True)

    private_key: SecretStr = Field(
        default=...,
        title="Private key",
        description="Hex private key (0x + 64 hex digits) of a dedicated hot wallet; stored encrypted.",
    )
    address: str | None = Field(
        default=None,
        title="Address",
        description="Public address of the wallet; derived from the key when empty, refused if it differs.",
    )
    base_url: str = Field(
        default="https://stablestudio.dev",
        title="Base URL",
        description="StableStudio API origin.",
    )
    blob_api_url: str | None = Field(
        default=None,
        title="Blob API URL",
        description="Upload (blob) API origin; empty means the service default.",
    )
    allowed_networks: list[str] = Field(
        default_factory=lambda: [BASE_MAINNET],
        title="Allowed networks",
        description="CAIP-2 networks the wallet pays on.",
    )
    allowed_pay_to: list[str] | None = Field(
        default=None,
        title="Allowed payTo addresses",
        description="Recipients the wallet pays; empty allows any valid address.",
    )
    payment_method: Literal["x402", "mpp", "auto"] = Field(
        default="x402",
        title="Payment method",
        description=(
            "x402 (USDC on Base), mpp (MPP charge on Tempo) or auto: of the offers the policy allows, the "
            "one with the lower amount, x402 first on ties. The same key, caps and records apply to both."
        ),
    )
    mpp_currencies: list[str] = Field(
        default_factory=lambda: [TEMPO_USDC_E],
        title="MPP currencies",
        description="TIP-20 tokens the wallet pays MPP charges in (default USDC.e on Tempo mainnet).",
    )
    mpp_chain_ids: list[int] = Field(
        default_factory=lambda: [TEMPO_MAINNET_CHAIN_ID],
        title="MPP chain ids",
        description="Tempo chains the wallet pays MPP charges on (4217 is Tempo mainnet).",
    )
    mpp_recipients: list[str] | None = Field(
        default=None,
        title="Allowed MPP recipients",
        description="Recipients of MPP charges; empty allows any valid address.",
    )
    tempo_rpc_url: str | None = Field(
        default=None,
        title="Tempo RPC URL",
        description="RPC asked for chain id and gas before signing an MPP charge; empty: Tempo mainnet's.",
    )
    allow_implausible_prices: bool = Field(
        default=False,
        title="Allow implausible prices",
        description=(
            "Sign quotes more than 50% above a route's published price (the per-call cap still applies). "
            "Off by default: such a quote is refused before signing."
        ),
    )
    max_image_result_bytes: int = Field(
        default=MAX_IMAGE_RESULT_BYTES,
        ge=1,
        title="Largest image result (bytes)",
        description="A downloaded image result over this many bytes is refused (default 64 MiB).",
    )
    max_video_result_bytes: int = Field(
        default=MAX_VIDEO_RESULT_BYTES,
        ge=1,
        title="Largest video result (bytes)",
        description="A downloaded video result over this many bytes is refused (default 2 GiB).",
    )
    base_rpc_url: str | None = Field(
        default=None,
        title="Base RPC URL",
        description=(
            "JSON-RPC node of Base, read (never written) for the wallet's USDC balance before a batch, and "
            "for whether a payment whose reply was lost moved money; empty: neither is asked."
        ),
    )
    max_usd_per_call: Decimal = _usd_field(
        Decimal("0.50"), "Cap per call (USD)", "Largest single payment, in USD."
    )
    max_usd_per_run: Decimal | None = _usd_field(
        None, "Cap per flow run (USD)", "Most one flow run may spend, in USD; empty means no cap."
    )
    max_usd_per_day: Decimal | None = _usd_field(
        None, "Cap per rolling 24 hours (USD)", "Most spent in any 24 hours, in USD; empty means no cap."
    )
    max_usd_total: Decimal | None = _usd_field(
        None,
        "Lifetime cap (USD)",
        "Most this wallet may ever spend through Prefect, in USD; empty means no cap.",
    )

    @field_validator("max_usd_per_call", "max_usd_per_run", "max_usd_per_day", "max_usd_total")
    @classmethod
    def _whole_micro_dollars(cls, value: Decimal | None) -> Decimal | None:
        if value is not None:
            atomic_from_dollars(value)  # raises on more than 6 decimals: USDC cannot pay a fraction of a unit
        return value

    @field_validator("max_usd_per_call")
    @classmethod
    def _positive_per_call(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("the per-call cap must be positive")
        return value

    @model_validator(mode="after")
    def _address_matches_key(self) -> Self:
        try:
            derived = Account.from_key(self.private_key.get_secret_value()).address
        except Exception:
            # Deliberately no detail: the library's message may quote the value.
            raise ValueError(
                "private_key is not a valid secp256k1 private key (0x + 64 hex digits)"
            ) from None
        if self.address is None or self.address == "":
            self.address = derived
        elif self.address.lower() != derived.lower():
            raise ValueError(
                f"address {self.address} does not match the private key (which controls {derived})"
            )
        else:
            self.address = derived  # checksummed form
        return self

    @property
    def public_address(self) -> str:
        """The checksummed address (always set after validation)."""
        assert self.address is not None
        return self.address

    @property
    def block_name(self) -> str | None:
        """The name this wallet was saved or loaded under (None for an unsaved one): events label it."""
        return self._block_document_name

    def policy(self) -> WalletPolicy:
        """The client-side policy: networks, payTo allow-list and the per-call cap."""
        return WalletPolicy(
            allowed_networks=frozenset(self.allowed_networks),
            allowed_pay_to=None if not self.allowed_pay_to else frozenset(self.allowed_pay_to),
            max_amount_per_call=atomic_from_dollars(self.max_usd_per_call),
            payment_method=self.payment_method,
            mpp_currencies=frozenset(self.mpp_currencies),
            mpp_chain_ids=frozenset(self.mpp_chain_ids),
            mpp_recipients=None if not self.mpp_recipients else frozenset(self.mpp_recipients),
            allow_implausible_prices=self.allow_implausible_prices,
        )

    async def balances(self, *, fresh: bool = False) -> list[WalletBalance]:
        """The wallet's balance on each network its payment method pays on (x402: USDC on Base; MPP: the
        first MPP currency on Tempo), read with `eth_call balanceOf` from that network's RPC URL. A network
        without a URL (`base_rpc_url`, `tempo_rpc_url`) is listed with `amount=None`: not checked. A read of
        the last few seconds is reused unless `fresh` (`client.chain.BALANCE_CACHE_SECONDS`).

        Raises:
            RpcError: a node answered badly (never read as a zero or a full balance).

        Example:
            ```python
            for balance in await wallet.balances():
                print(balance.network, "not checked" if balance.amount is None else balance.amount)
            ```
        """
        from prefect_stablestudio.client.chain import balance_of

        wanted: list[tuple[str, str, str | None]] = []
        if self.payment_method in ("x402", "auto"):
            wanted.append((BASE_MAINNET, BASE_USDC.address, self.base_rpc_url))
        if self.payment_method in ("mpp", "auto") and self.mpp_currencies:
            chain = self.mpp_chain_ids[0] if self.mpp_chain_ids else TEMPO_MAINNET_CHAIN_ID
            wanted.append((f"tempo:{chain}", self.mpp_currencies[0], self.tempo_rpc_url))
        out: list[WalletBalance] = []
        for network, asset, rpc_url in wanted:
            amount = (
                None if not rpc_url else await balance_of(rpc_url, asset, self.public_address, fresh=fresh)
            )
            out.append(WalletBalance(network=network, asset=asset, amount=amount, rpc_url=rpc_url))
        return out

    def caps(self) -> dict[CapName, int | None]:
        """Every cap in atomic units (None: no cap)."""

        def atomic(value: Decimal | None) -> int | None:
            return None if value is None else atomic_from_dollars(value)

        return {
            "per call": atomic_from_dollars(self.max_usd_per_call),
            "per flow run": atomic(self.max_usd_per_run),
            "rolling 24 h": atomic(self.max_usd_per_day),
            "lifetime": atomic(self.max_usd_total),
        }

    def budget(self, flow_run_id: str | None = None) -> SpendBudget:
        """The server-side caps; the per-run cap applies only when `flow_run_id` is given."""
        caps = self.caps()
        return SpendBudget(
            self.public_address,
            per_run=caps["per flow run"],
            per_day=caps["rolling 24 h"],
            lifetime=caps["lifetime"],
            flow_run_id=flow_run_id,
            wallet_name=self.block_name,
        )

    async def ensure_budget_limits(self, flow_run_id: str | None = None) -> SpendBudget:
        """Create (or align) the global concurrency limits behind the caps. Idempotent; never resets spend.

        Example:
            ```python
            wallet = await StableStudioWallet.aload("BLOCK_NAME")
            await wallet.ensure_budget_limits()
            ```
        """
        budget = self.budget(flow_run_id)
        await budget.ensure()
        return budget

    def get_client(
        self,
        *,
        hooks: PaymentHooks | None = None,
        flow_run_id: str | None = None,
        enforce_budget: bool = True,
        **client_kwargs: Any,
    ) -> StableStudioClient:
        """A new protocol client bound to this wallet's policy and spend caps. Use it with `async with`.

        Create one per task (an HTTP client must not cross event loops). Inside a flow or task run the per-run
        cap applies to that flow run unless `flow_run_id` says otherwise.

        Args:
            hooks: the paying step's record, called after the caps' reservation (`PaymentGuard`'s `record`),
                or a whole `PaymentGuard` with `enforce_budget=False`.
            flow_run_id: the flow run whose per-run cap applies; default: the current one, if any.
            enforce_budget: wrap `hooks` in a `PaymentGuard` reserving the server-side caps before signing;
                off for a `hooks` that is a guard already (the flows' clients) and tests of the raw client.
            **client_kwargs: passed to `StableStudioClient` (timeout, max_connections, ...).

        Example:
            ```python
            async with wallet.get_client() as client:
                blob_url = await client.upload("photo.png")
            ```
        """
        from prefect_stablestudio.client.studio import StableStudioClient

        run_id = flow_run_id if flow_run_id is not None else current_flow_run_id()
        bound: PaymentHooks | None = (
            PaymentGuard(self.budget(run_id), record=hooks) if enforce_budget else hooks
        )
        return StableStudioClient(
            self.private_key.get_secret_value(),
            base_url=self.base_url,
            policy=self.policy(),
            hooks=bound,
            blob_api_url=self.blob_api_url,
            **{
                "tempo_rpc_url": self.tempo_rpc_url,
                "base_rpc_url": self.base_rpc_url,
                "max_image_result_bytes": self.max_image_result_bytes,
                "max_video_result_bytes": self.max_video_result_bytes,
                **client_kwargs,
            },
        )

    def result_limit(self, media: ResultMedia) -> int:
        """The most a downloaded result of `media` ("image" or "video") may weigh, in bytes."""
        return self.max_image_result_bytes if media == "image" else self.max_video_result_bytes

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> StableStudioWallet:
        """Build a wallet from environment variables (headless workers, CI).

        | variable | field |
        | --- | --- |
        | `STABLESTUDIO_PRIVATE_KEY` (required) | private_key |
        | `STABLESTUDIO_ADDRESS` | address |
        | `STABLESTUDIO_BASE_URL` | base_url |
        | `STABLESTUDIO_BLOB_API_URL` | blob_api_url |
        | `STABLESTUDIO_ALLOWED_NETWORKS` (comma-separated) | allowed_networks |
        | `STABLESTUDIO_ALLOWED_PAY_TO` (comma-separated) | allowed_pay_to |
        | `STABLESTUDIO_MAX_USD_PER_CALL` / `_PER_RUN` / `_PER_DAY` / `_TOTAL` | the caps |
        | `STABLESTUDIO_PAYMENT_METHOD` (x402, mpp or auto) | payment_method |
        | `STABLESTUDIO_TEMPO_RPC_URL` | tempo_rpc_url |
        | `STABLESTUDIO_BASE_RPC_URL` | base_rpc_url |
        | `STABLESTUDIO_MPP_CURRENCIES` / `_MPP_RECIPIENTS` / `_MPP_CHAIN_IDS` (comma-separated) | MPP lists |

        Raises:
            KeyError: STABLESTUDIO_PRIVATE_KEY is not set.

        Example:
            ```python
            StableStudioWallet.from_env().save("worker-wallet", overwrite=True)
            ```
        """
        env = os.environ if environ is None else environ
        if not env.get(f"{_ENV_PREFIX}PRIVATE_KEY"):
            raise KeyError(f"{_ENV_PREFIX}PRIVATE_KEY is not set")
        fields: dict[str, Any] = {"private_key": env[f"{_ENV_PREFIX}PRIVATE_KEY"]}
        simple = {
            "ADDRESS": "address",
            "BASE_URL": "base_url",
            "BLOB_API_URL": "blob_api_url",
            "PAYMENT_METHOD": "payment_method",
            "TEMPO_RPC_URL": "tempo_rpc_url",
            "BASE_RPC_URL": "base_rpc_url",
        }
        for suffix, name in simple.items():
            if env.get(_ENV_PREFIX + suffix):
                fields[name] = env[_ENV_PREFIX + suffix]
        for suffix, name in {
            "ALLOWED_NETWORKS": "allowed_networks",
            "ALLOWED_PAY_TO": "allowed_pay_to",
            "MPP_CURRENCIES": "mpp_currencies",
            "MPP_RECIPIENTS": "mpp_recipients",
            "MPP_CHAIN_IDS": "mpp_chain_ids",
        }.items():
            if env.get(_ENV_PREFIX + suffix):
                fields[name] = [v.strip() for v in env[_ENV_PREFIX + suffix].split(",") if v.strip()]
        caps = {
            "PER_CALL": "max_usd_per_call",
            "PER_RUN": "max_usd_per_run",
            "PER_DAY": "max_usd_per_day",
            "TOTAL": "max_usd_total",
        }
        for suffix, name in caps.items():
            if env.get(f"{_ENV_PREFIX}MAX_USD_{suffix}"):
                fields[name] = Decimal(env[f"{_ENV_PREFIX}MAX_USD_{suffix}"])
        return cls(**fields)
