"""Prefect blocks of prefect-stablestudio.

Every Block is imported here: `prefect block register -m blocks` and the server's auto-registration only see
blocks that this module imports.

Example:
    ```python
    from prefect_stablestudio.blocks import StableStudioWallet

    wallet = StableStudioWallet.load("BLOCK_NAME")
    ```
"""

from prefect_stablestudio.blocks.wallet import StableStudioWallet

__all__ = ["StableStudioWallet"]
