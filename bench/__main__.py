"""`python -m bench [--quick] [--json]`: run the benchmarks, print a table (or one JSON object), save JSON."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from bench.report import print_tables, write_json
from bench.suite import run_suite


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit status 0 whether or not goals are met (the table and JSON say which)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    # Progress goes to stderr so that --json output on stdout stays one parseable object.
    err = Console(stderr=True)
    result = run_suite(args.quick, progress=lambda what: err.print(f"[dim]· {what}[/]"))
    path = write_json(result)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        # Wide enough for the scale table when stdout is a pipe or a file (rich would assume 80 columns).
        print_tables(result, Console(width=None if sys.stdout.isatty() else 150))
        err.print(f"[dim]JSON written to {path}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
