"""`make typecheck`: mypy --strict over every module of the installed package, proven by a count.

mypy cannot follow setuptools' package-dir mapping from the source tree (flows/ and blocks/ become
`prefect_stablestudio.flows` and `.blocks` only when installed), so the package is checked as installed by
the strict editable install, from a folder outside the repository (where the root's `flows/` and `blocks/`
cannot stand in for the mapped modules). The run fails unless mypy reports as many source files as the
package has modules. Then bench/, deployments/ and scripts/ (pyproject's `files`) are checked from the root.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "prefect_stablestudio"


def package_modules() -> list[Path]:
    """Every module file of the installed package, as the import system finds them."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{PACKAGE} is not installed: run `make setup`")
    (location,) = spec.submodule_search_locations
    return sorted(Path(location).rglob("*.py"))


def mypy(*args: str, cwd: Path) -> int:
    """Run mypy with the repository's configuration; return how many source files it checked."""
    command = [
        sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(ROOT / ".mypy_cache"), *args,
    ]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    found = re.search(r"in (\d+) source files?", done.stdout)
    return int(found.group(1)) if found else 0


def main() -> None:
    """Check the package (counting its modules), then the repository's other folders."""
    modules = package_modules()
    with tempfile.TemporaryDirectory() as outside:
        checked = mypy("-p", PACKAGE, cwd=Path(outside))
    if checked != len(modules):
        raise SystemExit(f"mypy checked {checked} files of {PACKAGE}, which has {len(modules)} modules")
    print(f"{PACKAGE}: all {checked} modules checked")
    mypy(cwd=ROOT)


if __name__ == "__main__":
    main()
