"""The private key appears nowhere: not in any log line at any level, repr, exception, artifact, Prefect API
payload (flow and task run parameters, the block document read without secrets, logs read back through the
API), intent record or CLI output. A run with failures is used on purpose: error paths are where keys leak.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from typer.testing import CliRunner

from prefect_stablestudio.blocks import StableStudioWallet
from prefect_stablestudio.cli import app
from prefect_stablestudio.flows import edit_images
from prefect_stablestudio.simulator import FaultRule
from tests.helpers.ledger import png_bytes

pytestmark = pytest.mark.usefixtures("prefect_api")
LOGGERS = ("", "prefect_stablestudio", "httpx", "httpcore", "prefect", "uvicorn")


class Capture(logging.Handler):
    """Every record, formatted with its traceback, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logs() -> Iterator[Capture]:
    capture = Capture()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger, level in saved:
            logger.removeHandler(capture)
            logger.setLevel(level)


def assert_absent(key: str, what: str, text: str) -> None:
    hex_key = key.lower().removeprefix("0x")
    assert len(hex_key) == 64
    assert hex_key not in text.lower(), f"the private key leaked into {what}"


async def test_the_key_appears_nowhere(
    make_sim: Any, tmp_path: Path, debug_logs: Capture, prefect_api: str
) -> None:
    sim = make_sim(
        latency_seconds=0.1,
        faults=(
            FaultRule(route="upload", kind="http_5xx", nth=(1,)),
            FaultRule(route="flux-edit", kind="reset_after_settlement", nth=(1,)),
            FaultRule(route="flux-edit", kind="job_failure", nth=(2,)),
        ),
    )
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    name = f"secret-{uuid.uuid4().hex[:10]}"
    texts: dict[str, str] = {}

    # The CLI saves the block from the environment, then shows it and its budget.
    runner = CliRunner()
    cli_env = {"STABLESTUDIO_PRIVATE_KEY": key, "PREFECT_API_URL": prefect_api}
    outputs = []
    for args in (
        ["wallet", "create", name, "--base-url", sim.base_url, "--blob-api-url", sim.blob_api_url],
        ["wallet", "show", name],
        ["budget", name],
    ):
        result = await asyncio.to_thread(runner.invoke, app, args, env=cli_env)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    texts["CLI output"] = "\n".join(outputs)

    images = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png_bytes((i * 60, 90, 200)))
        images.append(str(path))
    (tmp_path / "bad.png").write_text("not an image")
    images.append(str(tmp_path / "bad.png"))
    state = await edit_images(
        name,
        images,
        str(tmp_path / "out"),
        prompt="make it snow",
        intent_store_url=str(tmp_path / "intents"),
        return_state=True,
    )
    assert state.is_failed()  # a job failed and an input was bad: the error paths ran
    error = await state.result(raise_on_failure=False)
    assert isinstance(error, BaseException)
    texts["flow exception"] = "\n".join(
        [str(error), repr(error), *traceback.format_exception(error), repr(getattr(error, "result", None))]
    )
    run_id = state.state_details.flow_run_id

    await APILogHandler.aflush()
    async with get_client() as client:
        flow_run = await client.read_flow_run(run_id)
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        document = await client.read_block_document_by_name(
            name, block_type_slug="stablestudio-wallet", include_secrets=False
        )
    texts["flow run (parameters, state)"] = flow_run.model_dump_json() + "".join(
        r.model_dump_json() for r in runs
    )
    texts["task runs"] = "".join(t.model_dump_json() for t in task_runs)
    texts["logs read back through the API"] = "\n".join(log.message for log in logs)
    texts["artifacts"] = "".join(a.model_dump_json() for a in artifacts)
    texts["block document without secrets"] = document.model_dump_json()
    texts["intent records"] = "".join(p.read_text() for p in (tmp_path / "intents").glob("*.json"))

    wallet = await StableStudioWallet.aload(name)
    async with wallet.get_client() as c:
        texts["reprs"] = "\n".join(
            [repr(wallet), str(wallet), repr(c), str(c), repr(c.policy), repr(c.stats)]
        )
    texts["captured log records (DEBUG and up)"] = "\n".join(debug_logs.lines)

    # The searches looked at real content: the runs, the failures and the wallet's public address are there.
    assert len(logs) > 10 and len(artifacts) >= 3 and len(task_runs) >= 3  # one task run per edit
    assert any(line.startswith("DEBUG ") for line in debug_logs.lines)
    assert any("HTTP Request" in line for line in debug_logs.lines)
    assert "failed" in texts["logs read back through the API"]
    assert account.address.lower() in (texts["CLI output"] + texts["intent records"]).lower()
    assert '"private_key"' in texts["block document without secrets"]
    for what, text in texts.items():
        assert text, what
        assert_absent(key, what, text)
