"""``python -m mxo_async.emulator``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from ._config import Catalogue, EmulatorConfig
from ._faults import Faults
from ._schema import compile_validators
from ._server import EmulatorStartError, run_emulator

__all__ = ["main"]


def _catalogue(path: str) -> Catalogue:
    try:
        return Catalogue.load(path)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m mxo_async.emulator",
        description="Serve an emulated MXO tenant (docs/wire-contract.md) until SIGINT or SIGTERM.",
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
        help="faults to inject, e.g. '429=0.05,503=0.02,reset_before=0.01,latency=0.005,reject=0.1'",
    )
    parser.add_argument(
        "--key-attribute",
        default=defaults.key_attribute,
        metavar="NAME",
        help="API name of the space's customer-key attribute (default %(default)s)",
    )
    parser.add_argument(
        "--catalogue",
        type=_catalogue,
        default=Catalogue(),
        metavar="FILE",
        help='known codes, JSON {"propositions": [...], "activity_types": [...]} '
        "(default: every code is accepted)",
    )
    parser.add_argument(
        "--no-delete-permission",
        dest="delete_permission",
        action="store_false",
        help="emulate credentials that may not delete customers (DELETE answers 403)",
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
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        compile_validators()
    except ImportError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    secret = (
        args.client_secret
        or os.environ.get("MXO_EMULATOR_CLIENT_SECRET")
        or EmulatorConfig().client_secret
    )
    try:
        config = EmulatorConfig(
            site_key=args.site_key,
            client_id=args.client_id,
            client_secret=secret,
            token_ttl=args.token_ttl,
            seed=args.seed,
            faults=args.faults,
            keep_activities=args.keep_activities,
            key_attribute=args.key_attribute,
            catalogue=args.catalogue,
            delete_permission=args.delete_permission,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        run_emulator(config, args.host, args.port)
    except EmulatorStartError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
