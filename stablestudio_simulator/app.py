"""The ASGI application: StableStudio's routes plus the simulator's control routes over one state."""

from __future__ import annotations

from starlette.applications import Starlette

from stablestudio_simulator.control import build_control_routes
from stablestudio_simulator.routes import build_routes
from stablestudio_simulator.state import SimulatorState


def create_app(state: SimulatorState) -> Starlette:
    """A Starlette app serving ``state`` (bind it at ``state.origin``: SIWX proofs are checked against it).

    Example:
        >>> from stablestudio_simulator.settings import SimulatorSettings
        >>> app = create_app(SimulatorState(SimulatorSettings(), "http://127.0.0.1:8000"))
        >>> sorted(r.path for r in app.routes)[:2]
        ['/_sim/faults', '/_sim/fund']
    """
    return Starlette(routes=[*build_routes(state), *build_control_routes(state)])
