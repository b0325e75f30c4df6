"""Test configuration shared by the whole suite.

Prefect reads its settings when it is first imported, so the isolation below happens before any test module
imports it: a temporary PREFECT_HOME and result storage (a stale cache from an earlier run must never make an
idempotency test pass), and no telemetry writes into the test database.
"""

from __future__ import annotations

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="stablestudio-tests-")
os.environ["PREFECT_HOME"] = os.path.join(_TMP, "prefect-home")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = os.path.join(_TMP, "prefect-results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("STABLESTUDIO_PRIVATE_KEY", None)
os.environ.pop("STABLESTUDIO_BASE_URL", None)
# moto and s3fs must never look for real AWS credentials.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

# Fixtures live in one module per concern so that each piece of the product owns its own.
pytest_plugins = [
    "tests.fixtures.keys",
    "tests.fixtures.simulator",
    "tests.fixtures.prefect",
    "tests.fixtures.prefect_server",
    "tests.fixtures.s3",
    "tests.fixtures.servers",
]
