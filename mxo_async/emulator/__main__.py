"""``python -m mxo_async.emulator``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from ._config import EmulatorConfig
from ._faults import Faults
from ._server import run_emulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m mxo_async.emulator",
        description="Serve an emulated MXO tenant (WIRE.md) until SIGINT or SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port, 0 picks a free one (default %(default)s)"
    )
    parser.add_argument(
        "--site-key", default=defaults.site_key, help="site key (default %(default)s)"
    )
    parser.add_argument(
        "--client-id", default=defaults.client_id, help="client id (default %(default)s)"
    )
    parser.add_argument(
        "--client-secret",
        default=None,
        help="client secret (default: $MXO_EMULATOR_CLIENT_SECRET, else the test secret)",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=defaults.token_ttl,
        help="token lifetime in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed for TIDs and faults (default %(default)s)",
    )
    parser.add_argument(
        "--faults",
        type=Faults.parse,
        default=Faults(),
        metavar="SPEC",
        help="faults to inject, e.g. '429=0.05,503=0.02,reset_before=0.01,latency=0.005'",
    )
    parser.add_argument(
        "--no-keep-activities",
        dest="keep_activities",
        action="store_false",
        help="keep only counters and aggregates (long benchmarks)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and run the emulator."""
    args = _parser().parse_args(argv)
    secret = (
        args.client_secret
        or os.environ.get("MXO_EMULATOR_CLIENT_SECRET")
        or EmulatorConfig().client_secret
    )
    config = EmulatorConfig(
        site_key=args.site_key,
        client_id=args.client_id,
        client_secret=secret,
        token_ttl=args.token_ttl,
        seed=args.seed,
        faults=args.faults,
        keep_activities=args.keep_activities,
    )
    run_emulator(config, args.host, args.port)


if __name__ == "__main__":
    main()
