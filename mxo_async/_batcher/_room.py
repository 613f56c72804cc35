"""Backpressure: at most ``max_pending`` activities are buffered or in flight."""

from __future__ import annotations

import asyncio
from collections import deque

from .._errors import BatcherFullError

__all__ = ["Room"]


class Room:
    """A FIFO gate over a count of activities: ``max_pending`` of the batcher.

    ``try_take`` is the fast path (no suspension) and only succeeds when nobody is queued, so
    waiting submits are admitted in arrival order.
    """

    __slots__ = ("_raise_when_full", "_waiters", "limit", "used", "wanted")

    def __init__(self, limit: int, *, raise_when_full: bool) -> None:
        self.limit = limit
        self.used = 0
        self.wanted = 0  # total count of the queued takers
        self._raise_when_full = raise_when_full
        # (count, future): the future gets True once room is reserved, False if closed.
        self._waiters: deque[tuple[int, asyncio.Future[bool]]] = deque()

    @property
    def waiting(self) -> int:
        """How many takers are queued."""
        return len(self._waiters)

    def try_take(self, count: int) -> bool:
        """Take ``count`` if it fits and nobody is queued; never suspends."""
        if self._waiters or self.used + count > self.limit:
            return False
        self.used += count
        return True

    async def take(self, count: int) -> None:
        """Wait in line for ``count``; raise :class:`BatcherFullError` in raise mode."""
        if self._raise_when_full:
            raise BatcherFullError(
                f"the batcher holds {self.used} of max_pending={self.limit} activities"
            )
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (count, waiter)
        self._waiters.append(entry)
        self.wanted += count
        try:
            admitted = await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled() and waiter.result():
                self.give(count)  # room was reserved for us just before the cancel: hand it on
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self.wanted -= count
                self._admit()
            raise
        if not admitted:
            raise RuntimeError("the batcher closed while submit() was waiting for room")

    def give(self, count: int) -> None:
        """Return ``count`` and admit queued takers that now fit."""
        self.used -= count
        if self._waiters:
            self._admit()

    def close(self) -> None:
        """Turn every queued taker away (their ``take`` raises ``RuntimeError``)."""
        self.wanted = 0
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _admit(self) -> None:
        waiters = self._waiters
        while waiters:
            count, waiter = waiters[0]
            if waiter.done():  # cancelled; its taker has not run its cleanup yet
                waiters.popleft()
                self.wanted -= count
                continue
            if self.used + count > self.limit:
                return
            waiters.popleft()
            self.wanted -= count
            self.used += count
            waiter.set_result(True)
