"""What the batcher counts: live stats, the final report, and the running counts behind both."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from .._errors import (
    AmbiguousDeliveryError,
    MXOError,
    RejectedActivitiesError,
    ResponseFormatError,
)

__all__ = ["FLUSH_REASONS", "BatchReport", "BatcherStats", "Counts"]

FLUSH_REASONS = ("size", "latency", "pressure", "flush", "close")


def _copy_counts(value: Mapping[str, int]) -> Mapping[str, int]:
    return dict(value)


@attrs.frozen
class BatcherStats:
    """A snapshot of a batcher. Activity counts unless the name says requests.

    ``pending`` is what counts against ``max_pending``: activities buffered or in flight.
    ``flushes`` counts requests by reason: ``size``, ``latency``, ``flush`` or ``close``.
    """

    submitted: int
    pending: int
    buffers: int
    in_flight: int
    waiting_submits: int
    requests: int
    activities_sent: int
    delivered: int
    failed: int
    ambiguous: int
    flushes: Mapping[str, int] = attrs.field(converter=_copy_counts, hash=False)
    rejected: int = 0

    @property
    def activities_per_request(self) -> float:
        """Average request size so far (0.0 before the first request)."""
        return self.activities_sent / self.requests if self.requests else 0.0


@attrs.frozen
class BatchReport:
    """How a closed batcher's activities ended: delivered, rejected, failed or ambiguous.

    ``rejected`` activities were answered by MXO but not processed (listed in the answer's
    ``errors``; :class:`~mxo_async.RejectedActivitiesError`); ``ambiguous`` ones were in a
    request that failed after it may have been applied (:class:`~mxo_async.AmbiguousDeliveryError`),
    or whose success answer could not be read (:class:`~mxo_async.ResponseFormatError`: MXO
    answered 200, so they were stored); ``failed`` ones were certainly not stored, so resending
    them cannot count them twice.
    """

    delivered: int
    failed: int
    ambiguous: int
    requests: int
    submitted: int
    flushes: Mapping[str, int] = attrs.field(converter=_copy_counts, hash=False)
    rejected: int = 0

    @property
    def ok(self) -> bool:
        """True when every submitted activity was delivered."""
        return (
            self.failed == 0
            and self.ambiguous == 0
            and self.rejected == 0
            and self.delivered == self.submitted
        )


class Counts:
    """The batcher's running counts (activities unless named otherwise)."""

    __slots__ = (
        "activities_sent",
        "ambiguous",
        "delivered",
        "failed",
        "flushes",
        "rejected",
        "requests",
        "submitted",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.requests = 0
        self.activities_sent = 0
        self.delivered = 0
        self.failed = 0
        self.ambiguous = 0
        self.rejected = 0
        self.flushes = dict.fromkeys(FLUSH_REASONS, 0)

    def sent(self, count: int, reason: str) -> None:
        """Count a request of ``count`` activities sent for ``reason``."""
        self.requests += 1
        self.activities_sent += count
        self.flushes[reason] += 1

    def settled(self, count: int, error: MXOError | None) -> None:
        """Count how ``count`` activities of a request ended."""
        if error is None:
            self.delivered += count
        elif isinstance(error, RejectedActivitiesError):
            self.rejected += count
        elif isinstance(error, AmbiguousDeliveryError | ResponseFormatError):
            # A ResponseFormatError comes from a 200 answer: the activities were stored, so
            # counting them as failed (certainly not stored) would invite a duplicate resend.
            self.ambiguous += count
        else:
            self.failed += count

    def stats(
        self, *, pending: int, buffers: int, in_flight: int, waiting_submits: int
    ) -> BatcherStats:
        """A snapshot, completed with the batcher's live gauges."""
        return BatcherStats(
            submitted=self.submitted,
            pending=pending,
            buffers=buffers,
            in_flight=in_flight,
            waiting_submits=waiting_submits,
            requests=self.requests,
            activities_sent=self.activities_sent,
            delivered=self.delivered,
            failed=self.failed,
            ambiguous=self.ambiguous,
            flushes=self.flushes,
            rejected=self.rejected,
        )

    def report(self) -> BatchReport:
        """The final report."""
        return BatchReport(
            delivered=self.delivered,
            failed=self.failed,
            ambiguous=self.ambiguous,
            requests=self.requests,
            submitted=self.submitted,
            flushes=self.flushes,
            rejected=self.rejected,
        )
