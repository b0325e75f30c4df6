"""The ASGI application: StableStudio's routes plus the simulator's control routes over one state."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from prefect_stablestudio.simulator.control import build_control_routes
from prefect_stablestudio.simulator.discovery import build_discovery_routes, not_found_handlers
from prefect_stablestudio.simulator.routes import build_routes
from prefect_stablestudio.simulator.state import SimulatorState
from prefect_stablestudio.simulator.tempo_rpc import build_tempo_rpc_routes


def create_app(state: SimulatorState) -> Starlette:
    """A Starlette app serving ``state`` (bind it at ``state.origin``: SIWX proofs are checked against it).

    Example:
        >>> from prefect_stablestudio.simulator.settings import SimulatorSettings
        >>> app = create_app(SimulatorState(SimulatorSettings(), "http://127.0.0.1:8000"))
        >>> sorted(r.path for r in app.routes)[:2]
        ['/_sim/faults', '/_sim/fund']
    """

    async def client_gone(_: Request, exc: Exception) -> Response:
        # A client that timed out (e.g. during a slow fault) before its body was read: nothing to serve and
        # nothing moved. Counted, not logged as a server crash, so real errors stay visible in soak output.
        state.ledger.count(state.ledger.events, "client_disconnects")
        return Response(status_code=499)

    return Starlette(
        routes=[
            *build_routes(state),
            *build_discovery_routes(state),
            *build_control_routes(state),
            *build_tempo_rpc_routes(state),
        ],
        # An unknown path or method gets the router's route-not-found envelope, not Starlette's text.
        exception_handlers={ClientDisconnect: client_gone, **not_found_handlers(state)},
    )
