"""Exit statuses, outcome tallies and log-safe error lines shared by the commands."""

from __future__ import annotations

import enum

import attrs

from mxo_async import (
    AmbiguousDeliveryError,
    APIStatusError,
    AuthenticationError,
    Customer,
    ForbiddenError,
    MXOError,
    RejectedActivitiesError,
)

__all__ = [
    "Aborted",
    "ExitCode",
    "Tally",
    "describe_error",
    "exit_code",
    "is_fatal",
    "mask_customer",
]


class ExitCode(enum.IntEnum):
    """What the process exit status means (the same for every command)."""

    OK = 0
    """Everything was delivered (or erased, or printed)."""
    NOT_DELIVERED = 1
    """Some items were not delivered: invalid input, failed, rejected by MXO or ambiguous; each
    one was reported."""
    USAGE = 2
    """Bad command line, missing ``MXO_*`` setting or unreadable input (click's own status)."""
    ABORTED = 3
    """The run stopped early: credentials refused or not allowed, an unknown site key, a corrupt
    journal or one of another target."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT), after the requests in flight were settled or cancelled."""


class Aborted(Exception):
    """Stop the command and exit with :attr:`ExitCode.ABORTED`; the message is shown as is."""


@attrs.define
class Tally:
    """How the items of one run ended, in items and in activities.

    An item whose activities MXO partly rejected counts as ``rejected``; its other activities
    count as delivered (they were stored).
    """

    items: int = 0
    delivered: int = 0
    failed: int = 0
    ambiguous: int = 0
    rejected: int = 0
    invalid: int = 0
    skipped: int = 0
    activities_delivered: int = 0
    activities_failed: int = 0
    activities_ambiguous: int = 0
    activities_rejected: int = 0

    def add(self, error: MXOError | None, activities: int = 0, rejected: int | None = None) -> None:
        """Count one settled item: delivered when ``error`` is None, else failed, ambiguous or
        rejected (``rejected`` activities of a :class:`RejectedActivitiesError`, by default as
        many as it lists)."""
        self.items += 1
        if error is None:
            self.delivered += 1
            self.activities_delivered += activities
        elif isinstance(error, RejectedActivitiesError):
            count = min(activities, len(error.rejected) if rejected is None else rejected)
            self.rejected += 1
            self.activities_rejected += count
            self.activities_delivered += activities - count
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
    def activities(self) -> int:
        """Activities of the settled items, however they ended."""
        return (
            self.activities_delivered
            + self.activities_failed
            + self.activities_ambiguous
            + self.activities_rejected
        )

    @property
    def all_delivered(self) -> bool:
        """True when nothing failed, was rejected or is ambiguous and every input line was usable."""
        return self.failed == self.ambiguous == self.rejected == self.invalid == 0


def exit_code(tally: Tally) -> ExitCode:
    """``OK`` when everything was delivered, else ``NOT_DELIVERED``."""
    return ExitCode.OK if tally.all_delivered else ExitCode.NOT_DELIVERED


# errorCodes that say the request never reached a site this client may use.
_FATAL_CODES = frozenset({"INVALID_SITEKEY"})


def is_fatal(error: BaseException) -> bool:
    """True for errors that every other item would hit too, so the run should stop.

    Refused credentials, credentials without the permission (403) and an unknown site key.
    """
    if isinstance(error, AuthenticationError | ForbiddenError):
        return True
    return isinstance(error, APIStatusError) and error.code in _FATAL_CODES


def describe_error(error: BaseException, customer: Customer | None = None) -> str:
    """``TypeName: message`` with the customer's key and identifiers masked wherever the
    message repeats them."""
    message = mask_customer(str(error), customer)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def mask_customer(text: str, customer: Customer | None) -> str:
    """``text`` with the customer's key and identifier values masked (as in its ``masked()``)."""
    if customer is None:
        return text
    values = [customer.key, *customer.identifiers.values()]
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, _masked(value))
    return text


def _masked(value: str) -> str:
    masked = Customer.by_key(value).masked()  # "key='a***e'"
    return masked.removeprefix("key=").strip("'")
