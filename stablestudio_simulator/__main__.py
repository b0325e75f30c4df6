"""``python -m stablestudio_simulator``."""

import sys

from stablestudio_simulator.cli import main

sys.exit(main())
