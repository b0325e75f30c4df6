"""Everything the simulator remembers, in one resettable object shared by the routes and the handle."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

from starlette.responses import Response

from prefect_stablestudio.simulator.blob import BlobStore
from prefect_stablestudio.simulator.faults import FaultPlan, FaultRule
from prefect_stablestudio.simulator.jobs import JobBook
from prefect_stablestudio.simulator.ledger import Ledger
from prefect_stablestudio.simulator.render import RenderCache
from prefect_stablestudio.simulator.settings import BASE_NETWORK, SimulatorSettings
from prefect_stablestudio.simulator.siwx import SiwxVerifier


class SimulatorState:
    """Ledger, jobs, blobs, SIWX nonces, fault plan and the payment-identifier cache of one simulator.

    Example:
        >>> state = SimulatorState(SimulatorSettings(), "http://127.0.0.1:9")
        >>> state.blob_url("uploads/a b.png")
        'http://127.0.0.1:9/blobs/uploads/a%20b.png'
    """

    def __init__(self, settings: SimulatorSettings, origin: str) -> None:
        self.settings = settings
        self.origin = origin
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to the state right after start (fault plan from the settings)."""
        s = self.settings
        self.ledger = Ledger(default_balance=s.default_balance, funded=s.funded, seed=s.seed)
        self.jobs = JobBook(latency_seconds=s.latency_seconds, jitter=s.jitter, seed=s.seed)
        self.blobs = BlobStore()
        self.renders = RenderCache()
        self.siwx = SiwxVerifier(
            self.origin,
            network=BASE_NETWORK,
            accept_client_nonce=s.siwx_accept_client_nonce,
            domain_with_port=s.siwx_domain_with_port,
        )
        self.faults = FaultPlan(s.faults, seed=s.seed)
        self.chain_clock_offset = 0.0
        with self._lock:
            self._pid_cache: dict[str, tuple[str, Response]] = {}

    def chain_time(self) -> int:
        """The Base RPC's block time: now, plus what `Simulator.advance_chain_clock` added."""
        return int(time.time() + self.chain_clock_offset)

    def set_faults(self, rules: Sequence[FaultRule], seed: int | None = None) -> None:
        """Replace the fault plan; counters and streams start over."""
        self.faults = FaultPlan(rules, seed=self.settings.seed if seed is None else seed)

    def blob_url(self, pathname: str) -> str:
        """The public URL of a blob pathname."""
        return f"{self.origin}/blobs/{quote(pathname)}"

    def blob_pathname(self, url: str) -> str | None:
        """The pathname of an uploaded blob of this server that ``url`` points at, else None."""
        prefix = f"{self.origin}/blobs/"
        if not url.startswith(prefix):
            return None
        pathname = unquote(url[len(prefix) :].split("?", 1)[0])
        return pathname if self.blobs.get(pathname) is not None else None

    def cached_payment(self, payment_id: str) -> tuple[str, Response] | None:
        """The fingerprint and response recorded under a payment identifier."""
        with self._lock:
            return self._pid_cache.get(payment_id)

    def cache_payment(self, payment_id: str, fingerprint: str, response: Response) -> None:
        """Remember the response of a settled payment under its identifier."""
        with self._lock:
            self._pid_cache[payment_id] = (fingerprint, response)

    def snapshot(self) -> dict[str, Any]:
        """Counters, ledger, balances and spend, plus job and upload totals (JSON-ready)."""
        snap = self.ledger.snapshot()
        snap["counters"].update(self.jobs.counts())
        snap["origin"] = self.origin
        snap["faults"] = [r.model_dump(mode="json") for r in self.faults.rules]
        return snap
