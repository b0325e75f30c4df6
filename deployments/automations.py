"""The spend automation: when a wallet's rolling 24 h cap passes 80 %, pause `scheduled-edits` and notify.

A Prefect automation defined in code. Its trigger is the event the budget emits when a cap's count crosses a
threshold (`stablestudio.cap.crossed`, resource `stablestudio.wallet.<address>` labelled
`stablestudio.cap: day` and `stablestudio.threshold: 80` or `100`; see `prefect_stablestudio.blocks.events`).
Its actions run on Prefect's server: pause the deployment `edit-new-images/scheduled-edits` (its schedule
stops creating runs; resume it in the UI or with `prefect deployment resume`) and send a notification
through a saved notification block (any of Prefect's: Slack, Teams, email, a custom webhook, ...).

`make deploy` runs this after registering the deployments. Alone:

    python deployments/automations.py --notify custom-webhook/stablestudio-spend-alerts [--wallet-block NAME]

Creating it again replaces the automation of the same name. `--wallet-block` limits it to one wallet (by
block name); without it, any wallet's day cap triggers it. `--notify ''` creates it without a notification.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, cast
from uuid import UUID

from prefect.automations import Automation, EventTrigger, PauseDeployment, SendNotification
from prefect.client.orchestration import get_client

from prefect_stablestudio.blocks.events import CAP_CROSSED

AUTOMATION_NAME = "stablestudio-day-cap-80-percent"
DEPLOYMENT = "edit-new-images/scheduled-edits"
NOTIFY_BLOCK = "custom-webhook/stablestudio-spend-alerts"


def spend_automation(
    deployment_id: UUID, notification_block_id: UUID | None, *, wallet_block: str | None = None
) -> Automation:
    """The automation (not yet created): day cap at 80 % or more -> pause the deployment, notify."""
    match: dict[str, Any] = {
        "prefect.resource.id": "stablestudio.wallet.*",
        "stablestudio.cap": "day",
        "stablestudio.threshold": ["80", "100"],
    }
    if wallet_block:
        match["stablestudio.wallet.block"] = wallet_block
    actions: list[Any] = [PauseDeployment(source="selected", deployment_id=deployment_id)]
    if notification_block_id is not None:
        actions.append(
            SendNotification(
                block_document_id=notification_block_id,
                subject="StableStudio: a wallet's day cap is {{ event.payload.threshold_percent }} % spent",
                body=(
                    "Wallet {{ event.resource.name }} reached {{ event.payload.threshold_percent }} % of its "
                    "${{ event.payload.limit_usd }} rolling 24 h cap; ${{ event.payload.remaining_usd }} "
                    f"remains. The deployment {DEPLOYMENT} is paused: resume it once the spend is understood."
                ),
            )
        )
    return Automation(
        name=AUTOMATION_NAME,
        description="When a StableStudio wallet's rolling 24 h cap passes 80 %, pause scheduled-edits "
        "and send a notification (prefect-stablestudio, deployments/automations.py).",
        trigger=EventTrigger(expect={CAP_CROSSED}, match=match, posture="Reactive", threshold=1),
        actions=actions,
    )


async def create_spend_automation(
    *, deployment: str = DEPLOYMENT, notify: str | None = NOTIFY_BLOCK, wallet_block: str | None = None
) -> Automation:
    """Create (or replace) the automation on the Prefect server of PREFECT_API_URL.

    Raises:
        prefect.exceptions.ObjectNotFound: the deployment is not registered (run `prefect deploy` first).
        ValueError: the notification block is not saved (`notify` names it as "block-type-slug/name").
    """
    from prefect.blocks.core import Block

    async with get_client() as client:
        target = await client.read_deployment_by_name(deployment)
        block_id: UUID | None = None
        if notify:
            try:
                block = cast(Block, await Block.aload(notify))
            except ValueError as exc:
                raise ValueError(
                    f"notification block {notify!r} is not saved ({exc}); save one (e.g. a Custom Webhook "
                    "block in the UI) or pass --notify '' to pause without notifying"
                ) from None
            block_id = block._block_document_id
        for existing in await client.read_automations_by_name(AUTOMATION_NAME):
            await client.delete_automation(existing.id)
    return await spend_automation(target.id, block_id, wallet_block=wallet_block).acreate()


def main(argv: list[str] | None = None) -> int:
    """`python deployments/automations.py [--notify SLUG/NAME] [--wallet-block NAME] [--deployment F/D]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployment", default=DEPLOYMENT, help="flow-name/deployment-name to pause")
    parser.add_argument("--notify", default=NOTIFY_BLOCK, help="notification block, block-type-slug/name")
    parser.add_argument("--wallet-block", default=None, help="only this wallet block (default: any)")
    args = parser.parse_args(argv)
    try:
        automation = asyncio.run(
            create_spend_automation(
                deployment=args.deployment, notify=args.notify or None, wallet_block=args.wallet_block
            )
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"automation {automation.name} ({automation.id}) created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
