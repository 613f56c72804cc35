"""``mxo-async emulator``: serve the built-in MXO emulator in the foreground."""

from __future__ import annotations

import click

from mxo_async.emulator import EmulatorConfig, Faults, run_emulator

__all__ = ["emulator", "parse_faults"]

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
    help="Faults to inject, e.g. '429=0.05,503=0.02,reset_before=0.01,latency=0.005'.",
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
) -> None:
    """Serve an emulated MXO tenant until Ctrl-C (for trying the other commands).

    Point the other commands at it with MXO_BASE_URL=http://HOST:PORT and the same site key,
    client id and secret.
    """
    try:
        config = EmulatorConfig(
            site_key=site_key,
            client_id=client_id,
            client_secret=client_secret or _DEFAULTS.client_secret,
            token_ttl=token_ttl,
            seed=seed,
            faults=faults or Faults(),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    run_emulator(config, host, port)
