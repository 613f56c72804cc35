"""``mxo-async structure``: read one Pull Structure for one customer and print its JSON."""

from __future__ import annotations

import click
import orjson

from mxo_async import Customer, MXOClient, MXOError, ValidationError
from mxo_async._verdicts import describe_error, is_fatal

from ._status import Aborted, ExitCode
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["parse_properties", "structure"]


def parse_properties(pairs: tuple[str, ...], option: str = "--prop") -> dict[str, str]:
    """``("renewalDue=true", ...)`` as a dict; raises :class:`click.BadParameter` on a bad pair."""
    properties: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint=option)
        properties[name.strip()] = value
    return properties


@click.command(short_help="Print one customer's Pull Structure as JSON.")
@click.argument("name")
@click.option("--key", metavar="KEY", help="The customer's key (e.g. an e-mail address).")
@click.option("--tid", metavar="TID", help="The customer's MXO TID.")
@click.option(
    "--identifier",
    "identifier_pairs",
    multiple=True,
    metavar="API_NAME=VALUE",
    help="A customer identifier (repeatable), e.g. --identifier email=alice@example.com.",
)
@click.option(
    "--touchpoint", required=True, metavar="URI", help="Touchpoint URI, e.g. web://bank.com."
)
@click.option(
    "--prop",
    "props",
    multiple=True,
    metavar="NAME=VALUE",
    help="A context property (repeatable), e.g. --prop renewalDue=true.",
)
@click.option("--pretty", is_flag=True, help="Indent the JSON.")
@key_attribute_option
@click.pass_obj
def structure(
    target: Target,
    name: str,
    key: str | None,
    tid: str | None,
    identifier_pairs: tuple[str, ...],
    touchpoint: str,
    props: tuple[str, ...],
    pretty: bool,
) -> None:
    """Print the attributes of the Pull Structure NAME for the customer given by --key, --tid
    and/or --identifier.

    Example: mxo-async structure customerProfile --key alice@example.com
    --touchpoint web://bank.com --prop renewalDue=true --pretty

    Exit status 0 when printed, 1 when MXO answered with an error (404: unknown or unpublished
    structure), 2 on bad options, 3 when the credentials are refused or not allowed, or the
    site key is unknown.
    """
    identifiers = parse_properties(identifier_pairs, "--identifier")
    if key is None and tid is None and not identifiers:
        raise click.UsageError("give the customer with --key, --tid and/or --identifier")
    properties = parse_properties(props)
    try:
        customer = Customer(tid=tid, key=key, identifiers=identifiers)
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    client = target.client()
    code = run_command(_read(client, customer, touchpoint, name, properties, pretty))
    finish(code)


async def _read(
    client: MXOClient,
    customer: Customer,
    touchpoint: str,
    name: str,
    properties: dict[str, str],
    pretty: bool,
) -> ExitCode:
    async with client:
        try:
            found = await client.get_structure(customer, touchpoint, name, properties)
        except ValidationError as exc:
            raise click.UsageError(str(exc)) from None
        except MXOError as exc:
            if is_fatal(exc):
                raise Aborted(describe_error(exc)) from None
            click.echo(f"Error: {customer.masked()}: {describe_error(exc, customer)}", err=True)
            return ExitCode.NOT_DELIVERED
    option = orjson.OPT_INDENT_2 if pretty else 0
    click.echo(orjson.dumps(found.attributes, option=option).decode())
    return ExitCode.OK
