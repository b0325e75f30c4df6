"""Serve the deployments of `deployments/prefect.yaml` from one long-lived process, without a work pool.

    python deployments/serve.py --wallet my-wallet \\
        --source s3://my-bucket/incoming/ --dest s3://my-bucket/edited/ --prompt "Remove the background"

Every option falls back to the environment variable of the same meaning (STABLESTUDIO_WALLET,
STABLESTUDIO_SOURCE_PREFIX, STABLESTUDIO_DEST_PREFIX, STABLESTUDIO_PROMPT). Without a source and a
destination the pipeline is served unscheduled (runnable from the UI). Needs PREFECT_API_URL pointing at a
server: an ephemeral API cannot schedule runs. Stop with Ctrl-C (schedules pause on shutdown).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Coroutine
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from prefect_stablestudio.flows import edit_image, edit_images, edit_new_images, edit_shard, edit_sharded


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _built(deployment: RunnerDeployment | Coroutine[Any, Any, RunnerDeployment]) -> RunnerDeployment:
    # `to_deployment` of an async flow is typed as possibly awaitable; called outside an event loop it is not.
    assert isinstance(deployment, RunnerDeployment)
    return deployment


def build_parser() -> argparse.ArgumentParser:
    """The command line of the serve script."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallet", default=_env("STABLESTUDIO_WALLET"), help="wallet block name")
    parser.add_argument("--source", default=_env("STABLESTUDIO_SOURCE_PREFIX"), help="pipeline input prefix")
    parser.add_argument("--dest", default=_env("STABLESTUDIO_DEST_PREFIX"), help="pipeline output prefix")
    parser.add_argument("--prompt", default=_env("STABLESTUDIO_PROMPT"), help="pipeline prompt")
    parser.add_argument("--cron", default="*/15 * * * *", help="pipeline schedule (default every 15 min)")
    parser.add_argument(
        "--suffix", default="", help="appended to the deployment names, to serve several sets side by side"
    )
    parser.add_argument("--limit", type=int, default=4, help="flow runs executed at once by this process")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Build the deployments and serve them until interrupted."""
    args = build_parser().parse_args(argv)
    common: dict[str, Any] = {"wallet_block": args.wallet} if args.wallet else {}
    pipeline: dict[str, Any] = dict(common)
    for key, value in (
        ("source_prefix", args.source),
        ("destination_prefix", args.dest),
        ("prompt", args.prompt),
    ):
        if value:
            pipeline[key] = value
    scheduled = bool(args.source and args.dest and args.prompt and args.wallet)
    serve(
        _built(edit_new_images.to_deployment(
            name=f"scheduled-edits{args.suffix}",
            cron=args.cron if scheduled else None,
            parameters=pipeline,
            concurrency_limit=1,
            tags=["stablestudio", "pipeline"],
            description="Edit every new image under a prefix and write the results to another.",
        )),
        _built(edit_image.to_deployment(
            name=f"ui-edit{args.suffix}",
            parameters=common,
            tags=["stablestudio", "ui"],
            description="Edit one image from the Prefect UI (form parameters).",
        )),
        _built(edit_images.to_deployment(
            name=f"ui-batch{args.suffix}",
            parameters=common,
            tags=["stablestudio", "ui"],
            description="Edit a batch of images from the Prefect UI (form parameters).",
        )),
        # The parent waits for its shards: with --limit 1 it would hold the only slot they need.
        _built(edit_sharded.to_deployment(
            name=f"sharded-edits{args.suffix}",
            parameters={**common, "shard_deployment": f"edit-shard/edit-shard{args.suffix}"},
            tags=["stablestudio", "scale-out"],
            description="Edit a large prefix or list through shard runs spread over all workers.",
        )),
        _built(edit_shard.to_deployment(
            name=f"edit-shard{args.suffix}",
            tags=["stablestudio", "scale-out"],
            description="One shard of a sharded job (started by sharded-edits).",
        )),
        limit=args.limit,
    )


if __name__ == "__main__":
    main()
