"""The layout promises that users and other code rely on: one import name, light imports."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str, prefix: str) -> list[str]:
    code = f"{statement}; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] == {prefix!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(eval(out))  # noqa: S307 - our own subprocess prints a list literal


def test_package_and_protocol_client_import_no_prefect() -> None:
    assert _modules_after("import prefect_stablestudio", "prefect") == []
    assert _modules_after("import prefect_stablestudio.client", "prefect") == []
    assert _modules_after("import prefect_stablestudio.simulator", "prefect") == []


def test_simulator_does_not_import_the_client() -> None:
    loaded = _modules_after("import prefect_stablestudio.simulator", "prefect_stablestudio")
    assert "prefect_stablestudio.simulator" in loaded
    assert [m for m in loaded if m.startswith("prefect_stablestudio.client")] == []


def test_everyday_names_load_on_first_use() -> None:
    import prefect_stablestudio
    from prefect_stablestudio.blocks import StableStudioWallet
    from prefect_stablestudio.flows import edit_image, edit_images, edit_new_images

    assert prefect_stablestudio.StableStudioWallet is StableStudioWallet
    assert prefect_stablestudio.edit_image is edit_image
    assert prefect_stablestudio.edit_images is edit_images
    assert prefect_stablestudio.edit_new_images is edit_new_images
    assert sorted(prefect_stablestudio.__all__) == sorted(
        ["StableStudioWallet", "edit_image", "edit_images", "edit_new_images"]
    )
