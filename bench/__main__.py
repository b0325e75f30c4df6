"""`python -m bench [--quick] [--json | --markdown]`: run the benchmarks, print tables, save JSON.

`python -m bench --from bench/results/latest-full.json --markdown` renders a saved result again;
`--update-readme` writes its tables into README.md (between the bench:begin and bench:end markers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rich.console import Console

from bench.report import markdown, print_tables, update_readme, write_json
from bench.suite import run_suite


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit status 0 whether or not goals are met (the table and JSON say which)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")
    parser.add_argument(
        "--from", dest="saved", metavar="FILE", help="render a saved result instead of running"
    )
    parser.add_argument("--update-readme", action="store_true", help="write the tables into README.md")
    args = parser.parse_args(argv)
    if args.saved:
        with open(args.saved) as handle:
            _print(json.load(handle), args)
        return 0
    # Progress goes to stderr so that --json output on stdout stays one parseable object.
    err = Console(stderr=True)
    result = run_suite(args.quick, progress=lambda what: err.print(f"[dim]· {what}[/]"))
    path = write_json(result)
    _print(result, args)
    err.print(f"[dim]JSON written to {path}[/]")
    return 0


def _print(result: dict[str, Any], args: argparse.Namespace) -> None:
    if args.update_readme:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        update_readme(result, os.path.join(root, "README.md"))
    if args.json:
        print(json.dumps(result, default=str))
    elif args.markdown:
        print(markdown(result), end="")
    else:
        # Wide enough for the scale table when stdout is a pipe or a file (rich would assume 80 columns).
        print_tables(result, Console(width=None if sys.stdout.isatty() else 150))


if __name__ == "__main__":
    sys.exit(main())
