"""prefect-stablestudio: the `prefect.collections` entry point.

Prefect imports this module at server start and when it resolves a block type from its slug, so it imports the
blocks (to register `StableStudioWallet`) and nothing heavier. Tasks and flows live in `flows`.

Example:
    ```python
    from prefect_stablestudio import StableStudioWallet

    wallet = StableStudioWallet.load("BLOCK_NAME")
    ```
"""

from blocks import StableStudioWallet

__all__ = ["StableStudioWallet"]
