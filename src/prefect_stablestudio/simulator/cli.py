"""Command line: ``python -m prefect_stablestudio.simulator`` (or ``prefect-stablestudio simulator``)."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation

from prefect_stablestudio.simulator.faults import parse_fault_spec
from prefect_stablestudio.simulator.server import Simulator, serve_forever
from prefect_stablestudio.simulator.settings import SimulatorSettings, usdc_to_atomic


def _funding(value: str) -> tuple[str, Decimal]:
    address, sep, amount = value.partition("=")
    try:
        parsed = Decimal(amount)
        usdc_to_atomic(parsed)
    except (InvalidOperation, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"expected ADDRESS=USDC, got {value!r}") from exc
    if not sep or not address.startswith("0x"):
        raise argparse.ArgumentTypeError(f"expected ADDRESS=USDC, got {value!r}")
    return address, parsed


def _usdc(value: str) -> int:
    try:
        return usdc_to_atomic(Decimal(value))
    except (InvalidOperation, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"expected a USDC amount, got {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so another CLI can reuse its options)."""
    parser = argparse.ArgumentParser(
        prog="stablestudio-simulator",
        description="Serve a local StableStudio (x402, SIWX, uploads) with latency and fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8402, help="port to bind; 0 picks a free one (default 8402)"
    )
    parser.add_argument("--latency", type=float, default=5.0, help="seconds a job takes (default 5)")
    parser.add_argument(
        "--video-latency", type=float, default=60.0, help="seconds a video job takes (default 60)"
    )
    parser.add_argument("--jitter", type=float, default=0.2, help="relative latency spread (default 0.2)")
    parser.add_argument(
        "--fund",
        type=_funding,
        action="append",
        default=[],
        metavar="ADDRESS=USDC",
        help="start ADDRESS with this many USDC (repeatable)",
    )
    parser.add_argument(
        "--default-balance",
        type=_usdc,
        default=None,
        metavar="USDC",
        help="balance of wallets not funded explicitly (default 100)",
    )
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="fault plan: route:kind:rate or route:kind:#n[+m], comma-separated, or a JSON file "
        "(e.g. flux-edit:http_5xx:0.2,upload:reset_after_settlement:0.1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of latency jitter and rate faults")
    parser.add_argument(
        "--no-client-nonce", action="store_true", help="accept only SIWX nonces this server issued"
    )
    parser.add_argument(
        "--payment-identifier",
        action="store_true",
        help="advertise the x402 payment-identifier extension (idempotent retries)",
    )
    parser.add_argument(
        "--no-mpp", action="store_true", help="offer only x402 (no MPP Tempo charge challenge) on paid routes"
    )
    parser.add_argument(
        "--validation-order",
        choices=("before_quote", "after_payment"),
        default="before_quote",
        help="before_quote: a bad body gets a 400 instead of a quote (default); after_payment: the router's "
        "order, quoted at maxPrice and refused after the signed request, before any money moves",
    )
    parser.add_argument(
        "--siwx-domain-without-port",
        action="store_true",
        help="write the SIWX domain as @agentcash/router does: the host name without the port",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """Settings for parsed arguments."""
    extra = {} if args.default_balance is None else {"default_balance": args.default_balance}
    return SimulatorSettings(
        host=args.host,
        port=args.port,
        latency_seconds=args.latency,
        video_latency_seconds=args.video_latency,
        jitter=args.jitter,
        funded=dict(args.fund),
        faults=tuple(parse_fault_spec(args.faults)) if args.faults else (),
        seed=args.seed,
        siwx_accept_client_nonce=not args.no_client_nonce,
        payment_identifier=args.payment_identifier,
        mpp=not args.no_mpp,
        validation_order=args.validation_order,
        siwx_domain_with_port=not args.siwx_domain_without_port,
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted; returns the exit status.

    Example:
        $ python -m prefect_stablestudio.simulator --port 8402 --latency 1 --fund 0xYourAddress=5
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))

    def ready(sim: Simulator) -> None:
        print(f"StableStudio simulator listening on {sim.base_url}", flush=True)
        print(f"  STABLESTUDIO_BASE_URL={sim.base_url}", flush=True)
        print(f"  STABLESTUDIO_BLOB_API_URL={sim.blob_api_url}", flush=True)
        print(f"  state: {sim.base_url}/_sim/state   (Ctrl-C to stop)", flush=True)

    try:
        serve_forever(settings, on_ready=ready)
    except KeyboardInterrupt:
        pass
    return 0
