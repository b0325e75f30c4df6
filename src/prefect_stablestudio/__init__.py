"""prefect-stablestudio: edit images with Flux 2 Pro on StableStudio from Prefect, paid per call in USDC.

Everything the plugin installs lives under this one name:

| import | what it is | loads Prefect |
| --- | --- | --- |
| `prefect_stablestudio` | the everyday names below, loaded on first use | on first use |
| `prefect_stablestudio.blocks` | `StableStudioWallet`, the wallet block with its spend caps | yes |
| `prefect_stablestudio.flows` | tasks and flows: upload, paid edit, poll, save, batches, pipelines | yes |
| `prefect_stablestudio.client` | the protocol client: `StableStudioClient`, x402, SIWX, errors | never |
| `prefect_stablestudio.simulator` | a local StableStudio for demos and tests | never |

Importing this package loads nothing heavy (`prefect-stablestudio --help` stays fast, and
`prefect_stablestudio.client` stays usable without Prefect); the names below are imported when first used.

Example:
    ```python
    from prefect_stablestudio import StableStudioWallet, edit_images

    wallet = StableStudioWallet.load("my-wallet")
    result = await edit_images(
        "my-wallet", ["s3://photos/a.png"], destination="s3://edits/", prompt="make it snow"
    )
    ```
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.flows import edit_image, edit_images, edit_new_images

__all__ = ["StableStudioWallet", "edit_image", "edit_images", "edit_new_images"]

# Where each everyday name lives; importing it means importing Prefect, so it waits for first use.
_LAZY = {
    "StableStudioWallet": "prefect_stablestudio.blocks",
    "edit_image": "prefect_stablestudio.flows",
    "edit_images": "prefect_stablestudio.flows",
    "edit_new_images": "prefect_stablestudio.flows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
