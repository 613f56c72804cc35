"""The fate of one submit: an awaitable that settles once, with the result or the error."""

from __future__ import annotations

import asyncio
from collections.abc import Generator

from .._errors import MXOError
from .._models import ActivityResult

__all__ = ["Delivery"]


class Delivery:
    """The fate of one ``Batcher.submit``: ``await delivery`` returns the result or raises.

    It settles once, when the request that carried its activities succeeds or finally fails.
    Unlike a bare :class:`asyncio.Future`, a failed delivery that nobody awaits stays silent:
    failures are counted in the batcher's report and passed to its ``on_error`` handler.
    """

    __slots__ = ("_done", "_error", "_result", "_waiters", "activities")

    def __init__(self, activities: int) -> None:
        self.activities = activities
        """How many activities this submit carried."""
        self._done = False
        self._result: ActivityResult | None = None
        self._error: MXOError | None = None
        # One future per awaiting task (created only when someone awaits before settlement), so a
        # cancelled awaiter never cancels the others; they only ever get ``set_result(None)``.
        self._waiters: list[asyncio.Future[None]] | None = None

    def done(self) -> bool:
        """True once the delivery has settled (succeeded or failed)."""
        return self._done

    def result(self) -> ActivityResult:
        """The result; raises the error if the delivery failed, or if it has not settled yet."""
        if not self._done:
            raise asyncio.InvalidStateError("the delivery has not settled yet")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def exception(self) -> MXOError | None:
        """The error the delivery failed with, or None; raises if it has not settled yet."""
        if not self._done:
            raise asyncio.InvalidStateError("the delivery has not settled yet")
        return self._error

    def __await__(self) -> Generator[object, None, ActivityResult]:
        return self._wait().__await__()

    async def _wait(self) -> ActivityResult:
        if not self._done:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not self._done:
                    self._waiters.remove(waiter)
        return self.result()

    def _settle(self, result: ActivityResult | None, error: MXOError | None) -> None:
        self._done = True
        self._result = result
        self._error = error
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def __repr__(self) -> str:
        if not self._done:
            state = "pending"
        elif self._error is not None:
            state = f"failed: {type(self._error).__name__}"
        else:
            state = "delivered"
        return f"<Delivery activities={self.activities} {state}>"
