"""A local, protocol-faithful StableStudio: x402 payments, SIWX polling, uploads, ledger, faults.

Example:
    >>> from prefect_stablestudio.simulator import SimulatorSettings, run_simulator_in_thread
    >>> with run_simulator_in_thread(SimulatorSettings(latency_seconds=0.2)) as sim:
    ...     print(sim.base_url, sim.blob_api_url)   # doctest: +SKIP
"""

from prefect_stablestudio.simulator.app import create_app
from prefect_stablestudio.simulator.faults import FaultPlan, FaultRule, parse_fault_spec
from prefect_stablestudio.simulator.server import (
    Simulator,
    run_simulator,
    run_simulator_in_thread,
    serve_forever,
)
from prefect_stablestudio.simulator.settings import BASE_NETWORK, BASE_USDC, SimulatorSettings
from prefect_stablestudio.simulator.state import SimulatorState

__all__ = [
    "BASE_NETWORK",
    "BASE_USDC",
    "FaultPlan",
    "FaultRule",
    "Simulator",
    "SimulatorSettings",
    "SimulatorState",
    "create_app",
    "parse_fault_spec",
    "run_simulator",
    "run_simulator_in_thread",
    "serve_forever",
]
