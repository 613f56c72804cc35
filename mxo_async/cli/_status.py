"""Exit statuses, outcome tallies, when a run must stop, and log-safe error lines."""

from __future__ import annotations

import enum

import attrs

from mxo_async import (
    AmbiguousDeliveryError,
    MXOError,
    NotFoundError,
    RejectedActivitiesError,
    ResponseFormatError,
    TransportError,
)
from mxo_async._verdicts import describe_error, is_fatal

__all__ = [
    "Aborted",
    "ExitCode",
    "FailureWatch",
    "Tally",
    "exit_code",
    "outcome_reason",
    "plural",
]


class ExitCode(enum.IntEnum):
    """What the process exit status means (the same for every command)."""

    OK = 0
    """Everything was delivered (or erased, or printed)."""
    NOT_DELIVERED = 1
    """Some items were not delivered: invalid input, failed, rejected by MXO, ambiguous or
    unconfirmed; each one was reported."""
    USAGE = 2
    """Bad command line, missing ``MXO_*`` setting, unreadable input or unwritable output
    (click's own status)."""
    ABORTED = 3
    """The run stopped early: credentials refused or not allowed, an unknown site key, a host
    that cannot be reached or answers 404 to every request, or a journal that is corrupt, of
    another target or in use."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT), after the requests in flight were settled or cancelled."""
    TERMINATED = 143
    """SIGTERM (128 + 15), handled as Ctrl-C."""


class Aborted(Exception):
    """Stop the command and exit with :attr:`ExitCode.ABORTED`; the message is shown as is."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 line``, ``2 lines``, ``1,000 activities`` (``nouns`` when adding an s is wrong)."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


@attrs.define
class Tally:
    """How the items of one run ended, in items and in activities.

    An item whose activities MXO partly rejected counts as ``rejected``; its other activities
    count as delivered (they were stored). ``unconfirmed`` items were stored (MXO answered 200)
    but the answer could not be read (:class:`~mxo_async.ResponseFormatError`).
    """

    items: int = 0
    delivered: int = 0
    failed: int = 0
    ambiguous: int = 0
    unconfirmed: int = 0
    rejected: int = 0
    invalid: int = 0
    skipped: int = 0
    activities_delivered: int = 0
    activities_failed: int = 0
    activities_ambiguous: int = 0
    activities_unconfirmed: int = 0
    activities_rejected: int = 0

    def add(self, error: MXOError | None, activities: int = 0, rejected: int | None = None) -> None:
        """Count one settled item: delivered when ``error`` is None, else failed, ambiguous,
        unconfirmed or rejected (``rejected`` activities of a :class:`RejectedActivitiesError`,
        by default as many as it lists)."""
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
        elif isinstance(error, ResponseFormatError):
            self.unconfirmed += 1
            self.activities_unconfirmed += activities
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
            + self.activities_unconfirmed
            + self.activities_rejected
        )

    @property
    def all_delivered(self) -> bool:
        """True when every item was delivered and confirmed, and every input line was usable."""
        return (
            self.failed == self.ambiguous == self.unconfirmed == self.rejected == self.invalid == 0
        )


def exit_code(tally: Tally) -> ExitCode:
    """``OK`` when everything was delivered, else ``NOT_DELIVERED``."""
    return ExitCode.OK if tally.all_delivered else ExitCode.NOT_DELIVERED


def outcome_reason(error: MXOError) -> str:
    """The dead-letter ``reason`` of a failed call: ``failed`` (certainly not stored),
    ``ambiguous`` (may be stored) or ``unconfirmed`` (stored; the answer was unreadable)."""
    if isinstance(error, AmbiguousDeliveryError):
        return "ambiguous"
    if isinstance(error, ResponseFormatError):
        return "unconfirmed"
    return "failed"


# How many first settled items must all fail alike before a run is judged to target nothing.
WATCHED_ITEMS = 5


class FailureWatch:
    """Decides when a run must stop because its failures cannot be about single items.

    A fatal error (:func:`is_fatal`) stops it at once. Besides, while the first
    :data:`WATCHED_ITEMS` settled items *all* failed because the connection could not be opened
    (refused, unknown or unreachable host, TLS: a :class:`~mxo_async.TransportError` with
    ``request_sent=False``, after the client's own retries) or because MXO answered 404 without
    ``CUSTOMER_NOT_FOUND`` (a wrong base URL, API version or path), the run stops after the
    last of them: no single item causes that. Any other outcome among them (a success, a
    rejection, another error) disarms the watch for the rest of the run.
    """

    def __init__(self, watched: int = WATCHED_ITEMS) -> None:
        self._watched = watched
        self._seen = 0
        self._armed = True

    def observe(self, error: MXOError | None) -> str | None:
        """Count one settled item; return why the run must stop, or None to carry on."""
        if error is not None and is_fatal(error):
            return describe_error(error)
        if not self._armed:
            return None
        hint = _target_failure(error)
        if hint is None:
            self._armed = False
            return None
        self._seen += 1
        if self._seen < self._watched:
            return None
        self._armed = False
        assert error is not None  # _target_failure(None) is None
        return f"the first {self._watched} requests all failed: {describe_error(error)} ({hint})"


def _target_failure(error: MXOError | None) -> str | None:
    """A hint when ``error`` says the target, not the item, is wrong; else None."""
    if isinstance(error, TransportError) and not error.request_sent:
        return "the MXO host cannot be reached: check MXO_BASE_URL or --base-url"
    if isinstance(error, NotFoundError):
        return "check MXO_BASE_URL, MXO_API_VERSION and the site key"
    return None
