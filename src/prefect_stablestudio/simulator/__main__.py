"""``python -m prefect_stablestudio.simulator``."""

import sys

from prefect_stablestudio.simulator.cli import main

sys.exit(main())
