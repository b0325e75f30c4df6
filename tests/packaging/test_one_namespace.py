"""One import name: the wheel installs `prefect_stablestudio` and nothing else (the user-project test, which
needs the Prefect fixtures, is tests/flows/test_user_project.py)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this tree, built as `pip install` would build it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("prefect_stablestudio-*.whl")
    return built


def test_the_wheel_installs_one_import_name(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    # `bin/` holds the console script (prefect-stablestudio), not an import name.
    installed = sorted(
        p.name for p in Path(site).iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"
    )
    assert installed == ["prefect_stablestudio"]
    (record,) = Path(site).glob("prefect_stablestudio-*.dist-info/RECORD")
    files = {line.split(",")[0] for line in record.read_text().splitlines()}
    packaged = {n.split("/")[0] for n in files if ".dist-info/" not in n and not n.startswith("../")}
    assert packaged == {"prefect_stablestudio"}
    # The mapped folders land inside the namespace, with their data files.
    for expected in (
        "prefect_stablestudio/py.typed",
        "prefect_stablestudio/flows/edit.py",
        "prefect_stablestudio/blocks/wallet.py",
        "prefect_stablestudio/blocks/logo.png",
        "prefect_stablestudio/client/studio.py",
        "prefect_stablestudio/simulator/server.py",
    ):
        assert expected in files
    # Every module of the source tree is in the wheel: nothing is left behind by the mapping.
    sources = {
        f"prefect_stablestudio/{p.relative_to(ROOT / 'src' / 'prefect_stablestudio')}"
        for p in (ROOT / "src" / "prefect_stablestudio").rglob("*.py")
    }
    sources |= {f"prefect_stablestudio/{folder}/{p.name}" for folder in ("flows", "blocks")
                for p in (ROOT / folder).glob("*.py")}
    assert sources <= files
    entry_points = next(Path(site).glob("prefect_stablestudio-*.dist-info/entry_points.txt")).read_text()
    assert "prefect_stablestudio = prefect_stablestudio.blocks" in entry_points
