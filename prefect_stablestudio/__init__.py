"""prefect-stablestudio: the CLI, the demo, and a short import path for the wallet block.

Prefect's `prefect.collections` entry point names the `blocks` package (which registers
`StableStudioWallet`), so this package stays light: `prefect-stablestudio --help` does not load Prefect.

Example:
    ```python
    from prefect_stablestudio import StableStudioWallet

    wallet = StableStudioWallet.load("BLOCK_NAME")
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blocks import StableStudioWallet

__all__ = ["StableStudioWallet"]


def __getattr__(name: str) -> Any:
    # Imported on first use: loading the block means loading Prefect.
    if name == "StableStudioWallet":
        from blocks import StableStudioWallet

        return StableStudioWallet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
