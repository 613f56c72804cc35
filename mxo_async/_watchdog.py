"""Time limits for many concurrent attempts on ONE event-loop timer.

aiohttp arms loop timers per request: one for ``total``, one for ``connect`` (even when a pooled
connection is reused) and a ``sock_read`` timer re-armed on every read. A cancelled timer handle
stays in the loop's heap until it would have fired, so with limits of tens of seconds the heap
holds thousands of dead handles, and every push and pop compares handles in Python. Measured on
the benchmark, that bookkeeping cost more than everything else the client adds to a request.

A :class:`Watchdog` keeps the attempts in flight in a dict and one timer set for the earliest
expiry. A finished attempt just leaves the dict (the timer is not touched); when the timer fires,
it cancels the tasks whose time is up, exactly like ``asyncio.timeout`` would, and re-arms for
the next earliest expiry. With equal limits, new attempts always expire after the armed time, so
the timer is re-armed about once per limit period, whatever the request rate.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Any

__all__ = ["AttemptTimeout", "Limit", "Watchdog"]


class AttemptTimeout(TimeoutError):
    """The watchdog's limit cancelled the attempt (told apart from aiohttp's own timeouts)."""


class Limit:
    """``with watchdog.limit(seconds):`` — the body is cancelled when its time is up, and the
    cancellation comes out as :class:`AttemptTimeout` (as ``asyncio.timeout`` does, and as
    aiohttp's ``TimerContext``); leaving the block always ends the watch."""

    __slots__ = ("_seconds", "_task", "_watchdog")

    def __init__(self, watchdog: Watchdog, seconds: float) -> None:
        self._watchdog = watchdog
        self._seconds = seconds
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> Limit:
        self._task = self._watchdog.start(self._seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        assert task is not None
        if self._watchdog.settle(task) and exc_type is asyncio.CancelledError:
            raise AttemptTimeout(f"no complete response within {self._seconds:g} s") from None


class Watchdog:
    """Cancels a watched task when its time is up (see the module docstring).

    A task holds at most one watch at a time. Use the context manager, which cannot be half
    forgotten::

        with watchdog.limit(seconds):
            ...  # the awaits to limit; AttemptTimeout when the time is up
    """

    __slots__ = ("_fired", "_handle", "_loop", "_wake_at", "_watches")

    def limit(self, seconds: float) -> Limit:
        """A context manager limiting its body to ``seconds`` (see :class:`Limit`)."""
        return Limit(self, seconds)

    def __init__(self) -> None:
        # task -> (expiry, the task's pending cancellations when the watch began): a tuple, not
        # an object, because one is made per request.
        self._watches: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._fired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_at = math.inf

    def __len__(self) -> int:
        return len(self._watches)

    def expiry(self, task: asyncio.Task[Any]) -> float | None:
        """When ``task``'s watch expires (loop time), or None if it is not watched."""
        entry = self._watches.get(task)
        return None if entry is None else entry[0]

    def start(self, seconds: float) -> asyncio.Task[Any]:
        """Watch the current task: it is cancelled if still watched ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Watchdog.start() must be called from inside a task")
        if task in self._watches:
            raise RuntimeError("this task is already watched: settle() its watch first")
        expiry = loop.time() + seconds
        self._watches[task] = (expiry, task.cancelling())
        if expiry < self._wake_at or loop is not self._loop:
            self._arm(loop, expiry)
        return task

    def settle(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching; True (once) if the watch cancelled ``task`` and no one else did.

        Safe to call again: later calls return False. When it returns True, the cancellation
        it caused has been withdrawn (``Task.uncancel``) and the caller raises a timeout instead.
        """
        entry = self._watches.pop(task, None)
        if entry is None or task not in self._fired:
            return False
        self._fired.discard(task)
        return task.uncancel() <= entry[1]

    def close(self) -> None:
        """Drop the timer (the watches still in flight then run without a limit)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._wake_at = math.inf
        self._watches.clear()
        self._fired.clear()

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
        fired = self._fired
        for task, (expiry, _) in self._watches.items():
            if task in fired:
                continue
            if expiry <= now:
                fired.add(task)
                task.cancel()
            elif expiry < earliest:
                earliest = expiry
        if earliest != math.inf:
            self._arm(loop, earliest)
