"""Streaming bounded fan-out: run one awaitable call per item of a (possibly endless) source.

A fixed pool of worker tasks pulls items lazily from the source, one at a time, and hands each
settled item to the consumer as an :class:`~mxo_async.Outcome`. Nothing is materialised: at most
``window`` items are ever taken from the source and not yet handed to the consumer, so memory is
O(window) = O(concurrency) and a slow consumer pauses the workers and therefore the source.

The bound is one counter of *credits*: a worker takes a credit before it pulls an item and the
consumer gives one back for each outcome it receives. The same counter bounds the reorder buffer in
ordered mode, so there is no second queue to size. Workers loop; no task is created per item.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

import attrs

from ._errors import MXOError, ValidationError
from ._events import isolated
from ._models import Outcome

__all__ = ["FanOut", "Progress"]

T = TypeVar("T")
R = TypeVar("R")

# Unordered mode: how many settled outcomes may wait for the consumer beyond one per worker: at
# least UNORDERED_SLACK, and as many as there are workers. The consumer runs at most once per loop
# iteration, and a whole iteration's completions (up to one per worker) must fit without parking
# workers on credits: with less, workers stall every iteration, and the extra wake-ups and futures
# cost more CPU than the request itself (measured: ~10x the garbage collections). Still O(concurrency).
UNORDERED_SLACK = 16
# Ordered mode: a slow head-of-line item must not stall everyone at once.
ORDERED_WINDOW_FACTOR = 4

_NEW, _RUNNING, _CLOSED = "new", "running", "closed"


@attrs.define
class Progress:
    """Live counters of a fan-out (the same object is passed to ``on_progress``).

    ``started`` counts calls begun, ``skipped`` items settled by ``skip`` without a call,
    ``in_flight`` calls begun and not yet settled.
    """

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0

    @property
    def completed(self) -> int:
        """Items settled so far: succeeded, failed or skipped."""
        return self.succeeded + self.failed + self.skipped


class FanOut(Generic[T, R]):
    """Run ``call`` on every item of ``source`` with bounded concurrency, streaming the outcomes.

    Use it as ``async with FanOut(...) as outcomes: async for outcome in outcomes: ...``.
    Iterating without ``async with`` raises :class:`RuntimeError`: the context is what guarantees
    that no task outlives the fan-out.

    Args:
        source: any iterable or async iterable; pulled lazily and never read ahead of need.
        call: returns ``(result, attempts)``; raises :class:`MXOError` (with ``.attempts``) on
            failure. Any other exception is wrapped in an :class:`MXOError` naming its type
            (``__cause__`` set) so the item still gets exactly one outcome.
        concurrency: number of workers (calls in flight at most).
        ordered: yield outcomes in input order instead of completion order.
        window: at most this many items are taken from the source and not yet handed to the
            consumer. Default ``concurrency + max(16, concurrency)``, or ``4 * concurrency`` when
            ordered.
        on_progress: called with :attr:`progress` after each item settles; an exception it raises
            is logged once and counted, and changes nothing (the outcome is still delivered).
        on_settled: awaited with each outcome of a call *before* the consumer can receive it
            (the erasure journal persists there). Not called for skipped items.
        skip: returns a result for an item that needs no call (e.g. already done according to a
            journal), or None to process it. Skipped items are yielded with ``attempts=0``.

    A failing item never cancels the others. If the source raises, or ``on_settled`` or ``skip``
    raises, the fan-out stops pulling, lets the calls in flight
    finish, yields their outcomes, then raises that exception from ``__anext__``. Leaving the
    ``async with`` early cancels the calls in flight, awaits every worker and closes the source
    iterator (``aclose()``/``close()``).
    """

    def __init__(
        self,
        source: Iterable[T] | AsyncIterable[T],
        call: Callable[[T], Awaitable[tuple[R, int]]],
        *,
        concurrency: int = 64,
        ordered: bool = False,
        window: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_settled: Callable[[Outcome[T, R]], Awaitable[None]] | None = None,
        skip: Callable[[T], R | None] | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
        if window is None:
            window = (
                ORDERED_WINDOW_FACTOR * concurrency
                if ordered
                else concurrency + max(UNORDERED_SLACK, concurrency)
            )
        elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValidationError("window", f"must be an int >= 1, got {window!r}")
        self._source = source
        self._call = call
        self._concurrency = min(concurrency, window)
        self._ordered = ordered
        self._window = window
        self._on_progress = isolated(on_progress, "on_progress")
        self._on_settled = on_settled
        self._skip = skip
        self.progress = Progress()
        self._state = _NEW
        self._sync_it: Iterator[T] | None = None
        self._async_it: AsyncIterator[T] | None = None
        self._pull_lock: asyncio.Lock | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._live = 0
        self._pulled = 0
        self._credit = window
        self._credit_waiters: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._stopping = False
        self._error: BaseException | None = None
        self._ready: collections.deque[Outcome[T, R]] = collections.deque()
        self._reorder: dict[int, Outcome[T, R]] = {}
        self._next_index = 0
        self._waiter: asyncio.Future[None] | None = None

    @property
    def concurrency(self) -> int:
        """The number of workers."""
        return self._concurrency

    @property
    def window(self) -> int:
        """The most items taken from the source and not yet received by the consumer."""
        return self._window

    async def __aenter__(self) -> FanOut[T, R]:
        if self._state != _NEW:
            raise RuntimeError("a FanOut can be entered only once")
        loop = asyncio.get_running_loop()
        if isinstance(self._source, AsyncIterable):
            self._async_it = aiter(self._source)
            self._pull_lock = asyncio.Lock()
        else:
            self._sync_it = iter(self._source)
        self._state = _RUNNING
        self._live = self._concurrency
        self._workers = [
            loop.create_task(self._work(), name=f"mxo-fanout-worker-{n}")
            for n in range(self._concurrency)
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the calls in flight, await every worker and close the source iterator."""
        if self._state != _RUNNING:
            self._state = _CLOSED
            return
        self._state = _CLOSED
        self._stop(None)
        pending = [task for task in self._workers if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._workers = []
        self._ready.clear()
        self._reorder.clear()
        self._wake_consumer()
        if self._async_it is not None:
            aclose = getattr(self._async_it, "aclose", None)
            if aclose is not None:
                await aclose()
        elif self._sync_it is not None:
            close = getattr(self._sync_it, "close", None)
            if close is not None:
                close()

    def __aiter__(self) -> FanOut[T, R]:
        return self

    async def __anext__(self) -> Outcome[T, R]:
        if self._state == _NEW:
            raise RuntimeError(
                "use 'async with FanOut(...) as outcomes:' before iterating over the outcomes"
            )
        while self._state == _RUNNING:
            if self._ordered:
                outcome = self._reorder.pop(self._next_index, None)
                if outcome is not None:
                    self._next_index += 1
                    self._give_credit()
                    return outcome
            elif self._ready:
                if self._credit_waiters:
                    self._give_credit()
                else:
                    self._credit += 1  # the common case of _give_credit, without the call
                return self._ready.popleft()
            if self._live == 0:
                if self._reorder:  # a gap left by a fatal error: yield what settled, in order
                    self._next_index = min(self._reorder)
                    continue
                error, self._error = self._error, None
                if error is not None:
                    raise error
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        raise StopAsyncIteration

    # -- workers ------------------------------------------------------------------------------

    async def _work(self) -> None:
        call = self._call
        progress = self.progress
        try:
            while not self._stopping:
                if self._credit > 0:
                    self._credit -= 1
                elif not await self._wait_credit():
                    break
                # Pull exactly one item; StopIteration and source errors end the intake.
                if self._sync_it is not None:
                    try:
                        item = next(self._sync_it)
                    except StopIteration:
                        self._stop(None)
                        break
                    except Exception as exc:
                        self._stop(exc)
                        break
                else:
                    assert self._async_it is not None and self._pull_lock is not None
                    async with self._pull_lock:
                        if self._stopping:
                            break
                        try:
                            item = await anext(self._async_it)
                        except StopAsyncIteration:
                            self._stop(None)
                            break
                        except Exception as exc:
                            self._stop(exc)
                            break
                index = self._pulled
                self._pulled += 1

                done = self._skip(item) if self._skip is not None else None
                if done is not None:
                    outcome: Outcome[T, R] = Outcome(item, done, None, 0, index)
                    progress.skipped += 1
                else:
                    progress.started += 1
                    progress.in_flight += 1
                    try:
                        result, attempts = await call(item)
                    except MXOError as exc:
                        outcome = Outcome(item, None, exc, exc.attempts, index)
                    except Exception as exc:
                        outcome = Outcome(item, None, _wrap(exc), 1, index)
                    else:
                        outcome = Outcome(item, result, None, attempts, index)
                    if self._on_settled is not None:
                        await self._on_settled(outcome)
                    progress.in_flight -= 1
                    if outcome.error is None:
                        progress.succeeded += 1
                    else:
                        progress.failed += 1
                if self._on_progress is not None:
                    self._on_progress(progress)
                self._deliver(outcome)
        except asyncio.CancelledError:
            if self._state == _RUNNING:  # cancelled by someone else: never swallowed
                self._stop(asyncio.CancelledError("a fan-out worker was cancelled"))
            raise
        except Exception as exc:
            self._stop(exc)
        finally:
            self._live -= 1
            if self._live == 0:
                self._wake_consumer()

    def _deliver(self, outcome: Outcome[T, R]) -> None:
        if self._ordered:
            self._reorder[outcome.index] = outcome
            if outcome.index != self._next_index:
                return
        else:
            self._ready.append(outcome)
        if self._waiter is not None:
            self._wake_consumer()

    def _wake_consumer(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_credit(self) -> bool:
        """Park until the consumer hands over a credit (True) or the intake stops (False)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._credit_waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._credit += 1
            raise

    def _give_credit(self) -> None:
        waiters = self._credit_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._credit += 1

    def _stop(self, error: BaseException | None) -> None:
        """Stop pulling from the source; remember the first error for the consumer."""
        if error is not None and self._error is None and self._state == _RUNNING:
            self._error = error
        self._stopping = True
        while self._credit_waiters:
            waiter = self._credit_waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)


def _wrap(exc: Exception) -> MXOError:
    """An unexpected exception from ``call`` as an MXOError; its text may hold URLs, so omit it."""
    error = MXOError(f"unexpected {type(exc).__name__} raised by the fan-out call")
    error.__cause__ = exc
    error.attempts = 1
    return error
