"""A local, protocol-faithful StableStudio: x402 payments, SIWX polling, uploads, ledger, faults.

Example:
    >>> from stablestudio_simulator import SimulatorSettings, run_simulator_in_thread
    >>> with run_simulator_in_thread(SimulatorSettings(latency_seconds=0.2)) as sim:
    ...     print(sim.base_url, sim.blob_api_url)   # doctest: +SKIP
"""

from stablestudio_simulator.app import create_app
from stablestudio_simulator.faults import FaultPlan, FaultRule, parse_fault_spec
from stablestudio_simulator.server import Simulator, run_simulator, run_simulator_in_thread, serve_forever
from stablestudio_simulator.settings import BASE_NETWORK, BASE_USDC, SimulatorSettings
from stablestudio_simulator.state import SimulatorState

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
