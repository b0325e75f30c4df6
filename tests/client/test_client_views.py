"""`StableStudioClient.with_hooks`: concurrent callers share one pool and session, each with its own hooks."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect_stablestudio.client import EditRequest, StableStudioClient
from prefect_stablestudio.client.payment import NoHooks, Payment
from tests.client.helpers import image_bytes
from tests.client.helpers import simulator_client as client


class Seen(NoHooks):
    def __init__(self) -> None:
        self.nonces: list[str] = []

    async def after_signing(self, payment: Payment) -> None:
        self.nonces.append(payment.nonce)


async def test_views_share_the_pool_and_each_sees_only_its_own_payments(sim: Any, key: str) -> None:
    base_hooks, first, second = Seen(), Seen(), Seen()
    async with client(sim, key, hooks=base_hooks) as shared:
        views = [shared.with_hooks(first), shared.with_hooks(second)]

        async def edit(view: StableStudioClient, color: str) -> str:
            blob = await view.upload(image_bytes(color=color))
            job = await view.submit_edit(EditRequest(prompt="snow", images=[blob]))
            assert job.payment is not None
            return job.payment.nonce

        nonces = await asyncio.gather(edit(views[0], "red"), edit(views[1], "blue"))
        assert views[0].stats is shared.stats and views[1].hooks is second
        assert shared.stats.requests["blob_probe"] == 1  # what one view learnt, the others know
        http = shared._session.http
    assert http is not None and http.is_closed  # closing the original closes the one pool
    assert base_hooks.nonces == []
    assert len(first.nonces) == len(second.nonces) == 2  # an upload and an edit each
    assert first.nonces[-1] == nonces[0] and second.nonces[-1] == nonces[1]
    assert not set(first.nonces) & set(second.nonces)
