"""Exit statuses, outcome tallies and log-safe error lines shared by the commands."""

from __future__ import annotations

import enum

import attrs

from mxo_async import AmbiguousDeliveryError, AuthenticationError, Customer, MXOError

__all__ = ["Aborted", "ExitCode", "Tally", "describe_error", "exit_code", "is_fatal"]


class ExitCode(enum.IntEnum):
    """What the process exit status means (the same for every command)."""

    OK = 0
    """Everything was delivered (or erased, or printed)."""
    NOT_DELIVERED = 1
    """Some items were not delivered: invalid input, failed or ambiguous; each one was reported."""
    USAGE = 2
    """Bad command line, missing ``MXO_*`` setting or unreadable input (click's own status)."""
    ABORTED = 3
    """The run stopped early: credentials refused, a corrupt journal, or a broken target."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT), after the requests in flight were settled or cancelled."""


class Aborted(Exception):
    """Stop the command and exit with :attr:`ExitCode.ABORTED`; the message is shown as is."""


@attrs.define
class Tally:
    """How the items of one run ended, in items and in activities."""

    items: int = 0
    delivered: int = 0
    failed: int = 0
    ambiguous: int = 0
    invalid: int = 0
    skipped: int = 0
    activities_delivered: int = 0
    activities_failed: int = 0
    activities_ambiguous: int = 0

    def add(self, error: MXOError | None, activities: int = 0) -> None:
        """Count one settled item: delivered when ``error`` is None, else failed or ambiguous."""
        self.items += 1
        if error is None:
            self.delivered += 1
            self.activities_delivered += activities
        elif isinstance(error, AmbiguousDeliveryError):
            self.ambiguous += 1
            self.activities_ambiguous += activities
        else:
            self.failed += 1
            self.activities_failed += activities

    def add_invalid(self) -> None:
        """Count one input line that could not be turned into a request."""
        self.invalid += 1

    @property
    def all_delivered(self) -> bool:
        """True when nothing failed, nothing is ambiguous and every input line was usable."""
        return self.failed == 0 and self.ambiguous == 0 and self.invalid == 0


def exit_code(tally: Tally) -> ExitCode:
    """``OK`` when everything was delivered, else ``NOT_DELIVERED``."""
    return ExitCode.OK if tally.all_delivered else ExitCode.NOT_DELIVERED


def is_fatal(error: BaseException) -> bool:
    """True for errors that every other item would hit too, so the run should stop."""
    return isinstance(error, AuthenticationError)


def describe_error(error: BaseException, customer: Customer | None = None) -> str:
    """``TypeName: message`` with the customer's key masked wherever the message repeats it."""
    message = str(error)
    if customer is not None and customer.key:
        message = message.replace(customer.key, _masked_key(customer.key))
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def _masked_key(key: str) -> str:
    masked = Customer.by_key(key).masked()  # "key='a***e'"
    return masked.removeprefix("key=").strip("'")
