"""Fixtures of the conformance suite: a StableStudio stand-in on the unmodified @agentcash/router.

``router_standin`` runs ``npm ci`` once when ``router-standin/node_modules`` is missing (from the committed
lock file, pinned versions), then ``node server.mjs`` on port 80 of a loopback address of its own (127.80.x.y)
for the whole session. Port 80 because the router's SIWX challenge names the host without its port (production
is on 443): on any other port the challenge's domain would not be the origin the client called.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conformance.standin import (
    STANDIN_DIR,
    STANDIN_PORT,
    STARTUP_LINE,
    RouterStandin,
    Server,
    install_node_dependencies,
)


@pytest.fixture(scope="session")
def router_standin() -> Iterator[RouterStandin]:
    """The stand-in on port 80 of a loopback address of its own (127.80.x.y), its jobs complete after 0.3 s.

    Port 80 keeps the router's SIWX domain (the host name without the port) equal to the origin; an address of
    this run's own keeps two suites on one machine from contending for it."""
    install_node_dependencies()
    host = f"127.80.{random.randint(1, 254)}.{random.randint(1, 254)}"
    env = {
        **os.environ, "STANDIN_HOST": host, "STANDIN_PORT": str(STANDIN_PORT), "STANDIN_JOB_MS": "300",
    }
    process = subprocess.Popen(
        ["node", "server.mjs"],
        cwd=STANDIN_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    # The server prints its line once it listens; EOF (it died, e.g. port 80 taken) ends the loop too.
    for line in process.stdout:
        output.append(line)
        if STARTUP_LINE in line:
            break
    if process.poll() is not None:
        raise RuntimeError(f"the router stand-in did not start:\n{''.join(output)}")
    # Keep reading its output so that a chatty server never blocks on a full pipe.
    threading.Thread(target=output.extend, args=(process.stdout,), daemon=True).start()
    try:
        yield RouterStandin(base_url=f"http://{host}")
    finally:
        process.terminate()
        process.wait(10)


# What the simulator is set to when compared with the router: the router's validation order, and an upload
# size limit equal to the stand-in's (a server-side rule the client cannot know).
SIMULATOR_AS_ROUTER: dict[str, Any] = {
    "validation_order": "after_payment",
    "max_upload_bytes": 8 * 1024 * 1024,
}


@pytest.fixture(params=["simulator", "router"])
def server(request: pytest.FixtureRequest, make_sim: Callable[..., Any]) -> Server:
    """Each test that takes it runs twice: against the simulator (router settings) and the router stand-in."""
    if request.param == "router":
        standin: RouterStandin = request.getfixturevalue("router_standin")

        def standin_nonces(address: str) -> set[str]:
            prefix = address.lower() + ":"
            return {n.removeprefix(prefix) for n in standin.chain()["usedNonces"] if n.startswith(prefix)}

        return Server(
            "router", standin.base_url, standin.blob_api_url, standin.transfers_from, standin_nonces
        )
    sim = make_sim(**SIMULATOR_AS_ROUTER)

    def payments(address: str) -> list[dict[str, Any]]:
        return [p for p in sim.state()["ledger"]["payments"] if p["payer"].lower() == address.lower()]

    return Server(
        "simulator",
        sim.base_url,
        sim.blob_api_url,
        lambda address: [int(p["amount"]) for p in payments(address)],
        lambda address: {str(p["nonce"]).lower() for p in payments(address)},
    )


# The flow test saves a wallet Block the way the Prefect tests do.
