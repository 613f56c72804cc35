"""Time limits for many concurrent attempts on ONE event-loop timer.

aiohttp arms loop timers per request: one for ``total``, one for ``connect`` (even when a pooled
connection is reused) and a ``sock_read`` timer re-armed on every read. A cancelled timer handle
stays in the loop's heap until it would have fired, so with limits of tens of seconds the heap
holds thousands of dead handles, and every push and pop compares handles in Python. Measured on
the benchmark, that bookkeeping cost more than everything else the client adds to a request.

A :class:`Watchdog` keeps the attempts in flight in a set and one timer set for the earliest
expiry. A finished attempt just leaves the set (the timer is not touched); when the timer fires,
it cancels the tasks whose time is up, exactly like ``asyncio.timeout`` would, and re-arms for
the next earliest expiry. With equal limits, new attempts always expire after the armed time, so
the timer is re-armed about once per limit period, whatever the request rate.
"""

from __future__ import annotations

import asyncio
import math

__all__ = ["Watch", "Watchdog"]


class Watch:
    """One attempt's time limit, from :meth:`Watchdog.start` to :meth:`Watchdog.settle`."""

    __slots__ = ("cancelling", "expiry", "fired", "task")

    def __init__(self, task: asyncio.Task[object], expiry: float, cancelling: int) -> None:
        self.task = task
        self.expiry = expiry
        self.cancelling = cancelling  # the task's pending cancellations when the watch began
        self.fired = False


class Watchdog:
    """Cancels the current task of each :class:`Watch` when its time is up (see module doc).

    Use::

        watch = watchdog.start(seconds)
        try:
            ...  # the awaits to limit
        except asyncio.CancelledError:
            if watchdog.settle(watch):
                raise TimeoutError from None
            raise
        finally:
            watchdog.settle(watch)
    """

    __slots__ = ("_handle", "_loop", "_wake_at", "_watches")

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_at = math.inf

    def __len__(self) -> int:
        return len(self._watches)

    def start(self, seconds: float) -> Watch:
        """Watch the current task: it is cancelled if still watched ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Watchdog.start() must be called from inside a task")
        expiry = loop.time() + seconds
        watch = Watch(task, expiry, task.cancelling())
        self._watches.add(watch)
        if expiry < self._wake_at or loop is not self._loop:
            self._arm(loop, expiry)
        return watch

    def settle(self, watch: Watch) -> bool:
        """Stop watching; True (once) if the watch cancelled its task and no one else did.

        Safe to call again: later calls return False. When it returns True, the cancellation
        it caused has been withdrawn (``Task.uncancel``) and the caller raises a timeout instead.
        """
        self._watches.discard(watch)
        if not watch.fired:
            return False
        watch.fired = False
        return watch.task.uncancel() <= watch.cancelling

    def close(self) -> None:
        """Drop the timer (the watches still in flight then run without a limit)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._wake_at = math.inf
        self._watches.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._loop = loop
        self._wake_at = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._wake_at = math.inf
        loop = self._loop
        assert loop is not None
        now = loop.time()
        earliest = math.inf
        for watch in self._watches:
            if watch.fired:
                continue
            if watch.expiry <= now:
                watch.fired = True
                watch.task.cancel()
            elif watch.expiry < earliest:
                earliest = watch.expiry
        if earliest != math.inf:
            self._arm(loop, earliest)
