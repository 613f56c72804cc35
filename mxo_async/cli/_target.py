"""Which MXO tenant to talk to: ``MXO_*`` environment variables, overridden by options.

The connection settings are global options (``mxo-async --base-url ... send``); the customer key
attribute is an option of each command that builds a client (``--key-attribute``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import NoReturn, TypeVar

import attrs
import click

from mxo_async import MXOClient, ValidationError
from mxo_async._wire import CUSTOMER_KEY_API_NAME

from ._status import Aborted, ExitCode

__all__ = ["REQUIRED", "Target", "finish", "key_attribute_option", "run_command"]

F = TypeVar("F", bound=Callable[..., object])

# Option name -> environment variable; the first four are required to reach a tenant.
REQUIRED = {
    "base_url": "MXO_BASE_URL",
    "site_key": "MXO_SITE_KEY",
    "client_id": "MXO_CLIENT_ID",
    "client_secret": "MXO_CLIENT_SECRET",
}
OPTIONAL = {
    "token_url": "MXO_TOKEN_URL",
    "api_version": "MXO_API_VERSION",
    "customer_key_attribute": "MXO_CUSTOMER_KEY_ATTRIBUTE",
}


@attrs.frozen
class Target:
    """The target options (None when not given); the secret never appears in a repr."""

    base_url: str | None = None
    site_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    token_url: str | None = None
    customer_key_attribute: str | None = None
    api_version: str | None = None
    allow_insecure_http: bool = False

    def environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``MXO_*`` settings with the options applied on top."""
        env = dict(os.environ if environ is None else environ)
        for name, variable in {**REQUIRED, **OPTIONAL}.items():
            value = getattr(self, name, None)
            if value:
                env[variable] = value
        return env

    def missing(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The required variables that are neither set nor given as options."""
        env = self.environment(environ)
        return [variable for variable in REQUIRED.values() if not env.get(variable)]

    def key_attribute(self, environ: Mapping[str, str] | None = None) -> str:
        """The customer key attribute: the option, else ``MXO_CUSTOMER_KEY_ATTRIBUTE``, else
        ``customerkey``."""
        return self.environment(environ).get(OPTIONAL["customer_key_attribute"]) or (
            CUSTOMER_KEY_API_NAME
        )

    def configured(self, environ: Mapping[str, str] | None = None) -> bool:
        """True when every required setting is present."""
        return not self.missing(environ)

    def client(self, environ: Mapping[str, str] | None = None, **options: object) -> MXOClient:
        """Build the client, or raise a usage error naming what is missing or malformed."""
        missing = self.missing(environ)
        if missing:
            flags = ", ".join(
                f"{variable} (or --{name.replace('_', '-')})"
                for name, variable in REQUIRED.items()
                if variable in missing
            )
            raise click.UsageError(f"no MXO target configured: set {flags}")
        if self.allow_insecure_http:
            options.setdefault("allow_insecure_http", True)
        try:
            return MXOClient.from_env(self.environment(environ), **options)
        except ValidationError as exc:
            problem = exc.problem
            if "allow_insecure_http" in problem:  # the library names its own argument
                problem = (
                    "plain http is only allowed for loopback hosts; add --allow-insecure-http "
                    "to send over plain http anyway (credentials and tokens travel unencrypted)"
                )
            raise click.UsageError(f"bad MXO target setting: {exc.field}: {problem}") from None


def _set_key_attribute(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        if not value.strip():
            raise click.BadParameter("must not be empty", ctx, param)
        target = ctx.find_object(Target) or Target()
        ctx.obj = attrs.evolve(target, customer_key_attribute=value)


def key_attribute_option(command: F) -> F:
    """Add ``--key-attribute`` to a command that builds a client (it updates the Target)."""
    option = click.option(
        "--key-attribute",
        metavar="NAME",
        expose_value=False,
        callback=_set_key_attribute,
        help="API name of the customer attribute that customer_key values belong to "
        "[env MXO_CUSTOMER_KEY_ATTRIBUTE; default: customerkey].",
    )
    return option(command)


def run_command(coroutine: Coroutine[object, object, ExitCode]) -> ExitCode:
    """Run a command's coroutine; map an abort and Ctrl-C to their exit statuses.

    Long commands watch SIGINT and SIGTERM themselves (:mod:`._interrupt`) and return their
    status; a Ctrl-C outside that watch (while starting or ending) ends here.
    """
    try:
        return asyncio.run(coroutine)
    except Aborted as exc:
        click.echo(f"Error: {exc}", err=True)
        return ExitCode.ABORTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return ExitCode.INTERRUPTED


def finish(code: ExitCode) -> NoReturn:
    """End the command with ``code`` (click turns it into the process exit status)."""
    raise click.exceptions.Exit(int(code))
