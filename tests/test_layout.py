"""The layout promises that other code and users rely on."""

from __future__ import annotations

import subprocess
import sys


def test_protocol_client_imports_no_prefect() -> None:
    code = "import stablestudio, sys; print([m for m in sys.modules if m.startswith('prefect')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_simulator_does_not_import_the_client() -> None:
    code = (
        "import stablestudio_simulator, sys; "
        "print(sorted(m for m in sys.modules if m == 'stablestudio' or m.startswith('stablestudio.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
