"""Deterministic fault injection: which request gets which failure.

A fault plan is a list of rules. Each rule names a route, a kind of failure and either a rate (drawn from its
own seeded random stream) or a script (the ordinal numbers of the matching events that fail). Every rule keeps
its own counter and stream, so the same seed and the same sequence of requests always give the same faults.

Each kind acts at one checkpoint of a request's life:

- ``request`` (every request on the route, filtered by ``on``): ``http_5xx``, ``rate_limited_429``, ``slow``,
  ``malformed_json`` (the response body, whatever it would have been, is replaced by broken JSON);
- ``verified`` (paid requests whose payment verified): ``reset_before_settlement``,
  ``reset_after_settlement``, ``settlement_failure``;
- ``created`` (a paid request created its job or upload): ``job_failure``, ``expired_upload_token``.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal[
    "http_5xx",
    "rate_limited_429",
    "slow",
    "malformed_json",
    "reset_before_settlement",
    "reset_after_settlement",
    "settlement_failure",
    "job_failure",
    "expired_upload_token",
]
Checkpoint = Literal["request", "verified", "created"]

CHECKPOINT_OF: dict[str, Checkpoint] = {
    "http_5xx": "request",
    "rate_limited_429": "request",
    "slow": "request",
    "malformed_json": "request",
    "reset_before_settlement": "verified",
    "reset_after_settlement": "verified",
    "settlement_failure": "verified",
    "job_failure": "created",
    "expired_upload_token": "created",
}

# Short names accepted in rules and on the command line, mapped to the route names the app uses.
ROUTE_ALIASES: dict[str, str] = {"flux-edit": "flux-2-pro/edit"}


class FaultRule(BaseModel):
    """One fault: on which route, what kind, and when.

    Example:
        >>> FaultRule(route="flux-edit", kind="reset_after_settlement", nth=[2]).route
        'flux-2-pro/edit'
        >>> FaultRule(route="upload", kind="http_5xx", rate=0.2).kind
        'http_5xx'
    """

    model_config = ConfigDict(frozen=True)

    route: str = Field(
        description=(
            "Route name: '<model>/<operation>' for generate routes (alias 'flux-edit'), 'generate' for all "
            "of them, 'upload', 'upload-confirm', 'blob-put', 'job', 'jobs', 'blob-get', or '*' (all)."
        )
    )
    kind: FaultKind = Field(description="What goes wrong.")
    rate: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability per matching event.")
    nth: tuple[int, ...] | None = Field(
        default=None, description="1-based ordinals of the matching events that fail (a script)."
    )
    on: Literal["any", "paid", "unpaid"] = Field(
        default="any",
        description="For request-checkpoint kinds: match every request, only those with PAYMENT-SIGNATURE "
        "(or SIGN-IN-WITH-X on SIWX routes), or only those without.",
    )
    status: int = Field(default=503, ge=500, le=599, description="Status code of an http_5xx fault.")
    retry_after: int = Field(default=1, ge=0, description="Retry-After seconds of a rate_limited_429 fault.")
    delay: float = Field(default=1.0, ge=0.0, description="Seconds a slow fault waits before answering.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_alias(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("route"), str):
            data = {**data, "route": ROUTE_ALIASES.get(data["route"], data["route"])}
        return data

    @model_validator(mode="after")
    def _rate_or_script(self) -> FaultRule:
        if (self.rate is None) == (self.nth is None):
            raise ValueError("a fault rule needs exactly one of 'rate' or 'nth'")
        return self

    @property
    def checkpoint(self) -> Checkpoint:
        """The point of a request's life where this rule is decided."""
        return CHECKPOINT_OF[self.kind]

    def matches(self, route: str, paid: bool) -> bool:
        """Whether an event on ``route`` (paid or not) is one this rule counts."""
        if self.route not in ("*", route) and not (self.route == "generate" and "/" in route):
            return False
        if self.checkpoint != "request" or self.on == "any":
            return True
        return paid == (self.on == "paid")


class FaultPlan:
    """The live fault plan: rules plus their counters and random streams (thread-safe).

    Example:
        >>> plan = FaultPlan([FaultRule(route="upload", kind="http_5xx", nth=[2])], seed=7)
        >>> [plan.decide("request", "upload", paid=False) is not None for _ in range(3)]
        [False, True, False]
    """

    def __init__(self, rules: Sequence[FaultRule] = (), seed: int = 0) -> None:
        self._rules = list(rules)
        self._seed = seed
        self._lock = threading.Lock()
        self._counts = [0] * len(self._rules)
        self._streams = [random.Random(f"{seed}:{i}:{r.kind}") for i, r in enumerate(self._rules)]

    @property
    def rules(self) -> list[FaultRule]:
        """The rules, in order."""
        return list(self._rules)

    def decide(self, checkpoint: Checkpoint, route: str, *, paid: bool) -> FaultRule | None:
        """Count one event and return the first rule that fires for it, if any.

        Every matching rule advances its counter and stream even when an earlier rule already fired, so adding
        a rule never shifts the sequence of another.
        """
        fired: FaultRule | None = None
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.checkpoint != checkpoint or not rule.matches(route, paid):
                    continue
                self._counts[i] += 1
                if rule.rate is not None:
                    hit = self._streams[i].random() < rule.rate
                else:
                    hit = self._counts[i] in (rule.nth or ())
                if hit and fired is None:
                    fired = rule
        return fired


def parse_fault_spec(spec: str) -> list[FaultRule]:
    """Parse the command line's compact fault spec, or load a JSON file of rules.

    The compact form is comma-separated ``route:kind:rate`` or ``route:kind:#n[+m...]`` (a script), for
    example ``flux-edit:http_5xx:0.2,upload:reset_after_settlement:#2+5``. A path to an existing ``.json``
    file holding a list of rule objects is read instead.

    Example:
        >>> [r.kind for r in parse_fault_spec("flux-edit:http_5xx:0.2,upload:slow:#1")]
        ['http_5xx', 'slow']
    """
    path = Path(spec)
    if spec.endswith(".json") and path.is_file():
        raw = json.loads(path.read_text())
        if not isinstance(raw, list):
            raise ValueError("a fault plan file holds a JSON list of rules")
        return [FaultRule.model_validate(item) for item in raw]
    rules = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        fields = part.split(":")
        if len(fields) != 3:
            raise ValueError(f"fault spec {part!r} is not route:kind:rate or route:kind:#n")
        route, kind, when = fields
        if when.startswith("#"):
            nth = tuple(int(n) for n in when[1:].split("+"))
            rules.append(FaultRule.model_validate({"route": route, "kind": kind, "nth": nth}))
        else:
            rules.append(FaultRule.model_validate({"route": route, "kind": kind, "rate": float(when)}))
    return rules
