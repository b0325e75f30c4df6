"""Run one `edit_image` flow in this process, to be killed with SIGKILL by tests/reliability/test_crash.py.

Usage: python -m tests.reliability.crash_child '<json of edit_image keyword arguments>'
"""

from __future__ import annotations

import asyncio
import json
import sys


def main() -> None:
    from prefect_stablestudio.flows import edit_image

    kwargs = json.loads(sys.argv[1])
    asyncio.run(edit_image(**kwargs))


if __name__ == "__main__":
    main()
