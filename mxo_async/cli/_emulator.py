"""``mxo-async emulator``: serve the built-in MXO emulator in the foreground."""

from __future__ import annotations

import click

from mxo_async.emulator import Catalogue, EmulatorConfig, EmulatorStartError, Faults, run_emulator
from mxo_async.emulator._schema import compile_validators

__all__ = ["emulator", "parse_catalogue", "parse_faults"]

_DEFAULTS = EmulatorConfig()


def parse_faults(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> Faults | None:
    """A click callback: ``Faults.parse`` with a usage error instead of a ValueError."""
    if value is None:
        return None
    try:
        return Faults.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_catalogue(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> Catalogue | None:
    """A click callback: ``Catalogue.load`` with a usage error instead of a ValueError."""
    if value is None:
        return None
    try:
        return Catalogue.load(value)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{value}: {exc}") from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port; 0 picks a free one.")
@click.option("--site-key", default=_DEFAULTS.site_key, show_default=True, help="Site key.")
@click.option("--client-id", default=_DEFAULTS.client_id, show_default=True, help="Client id.")
@click.option(
    "--client-secret",
    envvar="MXO_EMULATOR_CLIENT_SECRET",
    default=None,
    help="Client secret [env MXO_EMULATOR_CLIENT_SECRET; default: the test secret].",
)
@click.option(
    "--token-ttl",
    type=float,
    default=_DEFAULTS.token_ttl,
    show_default=True,
    help="Access-token lifetime in seconds.",
)
@click.option(
    "--faults",
    callback=parse_faults,
    metavar="SPEC",
    help="Faults to inject, e.g. '429=0.05,503=0.02,reset_before=0.01,latency=0.005,reject=0.1'.",
)
@click.option(
    "--key-attribute",
    default=_DEFAULTS.key_attribute,
    show_default=True,
    metavar="NAME",
    help="API name of the space's customer-key attribute.",
)
@click.option(
    "--catalogue",
    callback=parse_catalogue,
    metavar="FILE",
    help='Known codes, JSON {"propositions": [...], "activity_types": [...]} '
    "[default: every code is accepted].",
)
@click.option(
    "--no-delete-permission",
    "delete_permission",
    flag_value=False,
    default=True,
    help="Emulate credentials that may not delete customers (DELETE answers 403).",
)
@click.option(
    "--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seed for TIDs and faults."
)
def emulator(
    host: str,
    port: int,
    site_key: str,
    client_id: str,
    client_secret: str | None,
    token_ttl: float,
    faults: Faults | None,
    seed: int,
    key_attribute: str,
    catalogue: Catalogue | None,
    delete_permission: bool,
) -> None:
    """Serve an emulated MXO tenant until Ctrl-C (for trying the other commands).

    Point the other commands at it with MXO_BASE_URL=http://HOST:PORT and the same site key,
    client id and secret.
    """
    try:
        compile_validators()
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        config = EmulatorConfig(
            site_key=site_key,
            client_id=client_id,
            client_secret=client_secret or _DEFAULTS.client_secret,
            token_ttl=token_ttl,
            seed=seed,
            faults=faults or Faults(),
            key_attribute=key_attribute,
            catalogue=catalogue or Catalogue(),
            delete_permission=delete_permission,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run_emulator(config, host, port)
    except EmulatorStartError as exc:
        # One line, not click's usage block: the command line was fine, the port was not.
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
