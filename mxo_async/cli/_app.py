"""The ``mxo-async`` command group: global target options and the subcommands."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping

import attrs
import click
from rich.logging import RichHandler

import mxo_async

from ._demo import demo
from ._emulator import emulator
from ._erase import erase
from ._help import Context
from ._otel import MODES as OTEL_MODES
from ._progress import stderr_console
from ._send import send
from ._structure import structure
from ._target import Target
from ._worker import sweep, worker

__all__ = ["cli", "main"]

_EPILOG = """\
Exit status: 0 everything was delivered; 1 some items were not delivered (invalid input, failed,
rejected by MXO, ambiguous or unconfirmed; each is reported and dead-lettered); 2 usage error
(bad options or input, a missing setting, an output path that cannot be written); 3 aborted
(credentials refused or not allowed, unknown site key, a host that cannot be reached or
answers 404 to every request, a journal that is corrupt, of another target or in use); 130
interrupted (Ctrl-C), 143 terminated (SIGTERM): the summary says where to continue.
"""


class _Group(click.Group):
    """The command group; a bare ``--otel`` means ``--otel otlp``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _otel_default(args, self.commands))


def _otel_default(args: list[str], commands: Mapping[str, object]) -> list[str]:
    # click would take the next word (the command's name) as --otel's value.
    for index, arg in enumerate(args):
        if arg in commands:
            break
        if arg == "--otel" and (index + 1 == len(args) or args[index + 1] not in OTEL_MODES):
            return [*args[: index + 1], "otlp", *args[index + 1 :]]
    return args


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
)
@click.option(
    "--base-url",
    metavar="URL",
    help="MXO host, e.g. https://eu2.thunderhead.com [env MXO_BASE_URL]",
)
@click.option(
    "--site-key", metavar="KEY", help="Site key, e.g. ONE-LJBKEO4Y7J-5669 [env MXO_SITE_KEY]"
)
@click.option("--client-id", metavar="ID", help="OAuth2 client id [env MXO_CLIENT_ID]")
@click.option(
    "--client-secret",
    metavar="SECRET",
    help="OAuth2 client secret; prefer the environment, the command line is visible to other users [env MXO_CLIENT_SECRET]",
)
@click.option(
    "--token-url",
    metavar="URL",
    help="Token endpoint if not BASE_URL/one/oauth2token [env MXO_TOKEN_URL]",
)
@click.option(
    "--api-version",
    metavar="VERSION",
    help="Customer API version, e.g. 3.1.0 (the default) or 3.0.0 [env MXO_API_VERSION]",
)
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    help="Allow a plain http:// base or token URL that is not on this machine "
    "(credentials and tokens then travel unencrypted).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Show the library's log on stderr: -v its warnings and retries (info), "
    "-vv also debug. Without -v only its errors are shown.",
)
@click.option(
    "--otel",
    type=click.Choice(OTEL_MODES),
    default=None,
    help="OpenTelemetry traces and metrics of the run: through OTLP (set the standard "
    "OTEL_EXPORTER_OTLP_* variables), or `--otel console` for a span summary on stderr. "
    'Needs the "otel" extra.',
)
@click.version_option(mxo_async.__version__, prog_name="mxo-async")
@click.pass_context
def cli(
    ctx: click.Context,
    base_url: str | None,
    site_key: str | None,
    client_id: str | None,
    client_secret: str | None,
    token_url: str | None,
    api_version: str | None,
    allow_insecure_http: bool,
    verbose: int,
    otel: str | None,
) -> None:
    """Send activities to MXO, erase customers and read Pull Structures, at volume.

    The tenant comes from the MXO_BASE_URL, MXO_SITE_KEY, MXO_CLIENT_ID and MXO_CLIENT_SECRET
    environment variables (optionally MXO_TOKEN_URL, MXO_API_VERSION and
    MXO_CUSTOMER_KEY_ATTRIBUTE); the options below override them, and each command's
    --key-attribute overrides MXO_CUSTOMER_KEY_ATTRIBUTE. Try `mxo-async demo`: it needs no
    tenant.
    """
    ctx.obj = Target(
        base_url,
        site_key,
        client_id,
        client_secret,
        token_url,
        api_version=api_version,
        allow_insecure_http=allow_insecure_http,
    )
    ctx.call_on_close(_configure_logging(verbose))
    if otel is not None:  # every client of the run reports to it
        from ._otel import TracedTarget, start

        telemetry, finish = start(otel)
        ctx.obj = TracedTarget(**attrs.asdict(ctx.obj, recurse=False), telemetry=telemetry)
        ctx.call_on_close(finish)


def _configure_logging(verbose: int) -> Callable[[], None]:
    """Show the ``mxo_async`` logger on stderr (errors; warnings and info with ``-v``, debug
    with ``-vv``); return the undo.

    On a terminal the lines are rich's; otherwise (a file, a pipe) plain lines that are never
    wrapped, one record per line.
    """
    logger = logging.getLogger("mxo_async")
    level = logger.level
    handler: logging.Handler
    isatty = getattr(sys.stderr, "isatty", None)
    if isatty is not None and isatty():
        handler = RichHandler(console=stderr_console(), show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel({0: logging.ERROR, 1: logging.INFO}.get(verbose, logging.DEBUG))
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(handler.level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo


cli.context_class = Context
emulator.short_help = "Serve an emulated MXO tenant until Ctrl-C."
for _command in (demo, send, erase, structure, emulator, worker, sweep):
    _command.context_class = Context
    cli.add_command(_command)


def main() -> None:
    """The console-script entry point."""
    cli(prog_name="mxo-async")
