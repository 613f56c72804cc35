"""The ``mxo-async`` command group: global target options and the subcommands."""

from __future__ import annotations

import logging
from collections.abc import Callable

import click
from rich.console import Console
from rich.logging import RichHandler

import mxo_async

from ._demo import demo
from ._emulator import emulator
from ._erase import erase
from ._send import send
from ._structure import structure
from ._target import Target

__all__ = ["cli", "main"]

_EPILOG = """\
Exit status: 0 everything was delivered; 1 some items were not delivered (invalid input, failed,
rejected by MXO or ambiguous; each is reported and dead-lettered); 2 usage error; 3 aborted
(credentials refused or not allowed, unknown site key, corrupt journal or one of another
target); 130 interrupted.
"""


@click.group(
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
    "-v",
    "--verbose",
    count=True,
    help="Log the library's warnings and retries (-v: info, -vv: debug) on stderr.",
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
    verbose: int,
) -> None:
    """Send activities to MXO, erase customers and read Pull Structures, at volume.

    The tenant comes from the MXO_BASE_URL, MXO_SITE_KEY, MXO_CLIENT_ID and MXO_CLIENT_SECRET
    environment variables (optionally MXO_TOKEN_URL, MXO_API_VERSION and
    MXO_CUSTOMER_KEY_ATTRIBUTE); the options below override them, and each command's
    --key-attribute overrides MXO_CUSTOMER_KEY_ATTRIBUTE. Try `mxo-async demo`: it needs no
    tenant.
    """
    ctx.obj = Target(base_url, site_key, client_id, client_secret, token_url)
    ctx.call_on_close(_configure_logging(verbose))


def _configure_logging(verbose: int) -> Callable[[], None]:
    """Show the ``mxo_async`` logger on stderr (warnings, more with ``-v``); return the undo."""
    logger = logging.getLogger("mxo_async")
    level = logger.level
    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    handler.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(handler.level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo


for _command in (demo, send, erase, structure, emulator):
    cli.add_command(_command)


def main() -> None:
    """The console-script entry point."""
    cli(prog_name="mxo-async")
