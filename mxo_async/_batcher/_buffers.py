"""Customer contexts, their buffers of unsent activities, and the barriers ``flush()`` waits on."""

from __future__ import annotations

import asyncio
from collections import deque

from .._models import Activity, ActivityRequest, Customer, Device
from ._delivery import Delivery

__all__ = ["Barriers", "Batch", "Context", "ContextKey"]


class _Barrier:
    __slots__ = ("future", "mark", "remaining")

    def __init__(self, mark: int, remaining: int, future: asyncio.Future[None]) -> None:
        self.mark = mark
        self.remaining = remaining
        self.future = future


class Barriers:
    """``flush()`` waits: each one waits for the batches that existed when it began.

    Batches are numbered in creation order (``seq``) and settle in any order, so a barrier
    counts down the settlements of batches numbered below its mark.
    """

    __slots__ = ("_waits",)

    def __init__(self) -> None:
        self._waits: list[_Barrier] = []

    async def wait(self, mark: int, remaining: int) -> None:
        """Return once ``remaining`` batches numbered below ``mark`` have settled."""
        if remaining <= 0:
            return
        barrier = _Barrier(mark, remaining, asyncio.get_running_loop().create_future())
        self._waits.append(barrier)
        try:
            await barrier.future
        finally:
            if barrier in self._waits:
                self._waits.remove(barrier)

    def settled(self, seq: int) -> None:
        """Note that batch ``seq`` settled; release the barriers it completes."""
        if not self._waits:
            return
        for barrier in list(self._waits):
            if seq < barrier.mark:
                barrier.remaining -= 1
                if barrier.remaining == 0:
                    self._waits.remove(barrier)
                    if not barrier.future.done():
                        barrier.future.set_result(None)


ContextKey = tuple[Customer, str, tuple[tuple[str, str], ...], Device | None]


class Context:
    """One customer context (customer, touchpoint, properties, device) and its unsent buffers."""

    __slots__ = ("batches", "busy", "customer", "device", "key", "properties", "touchpoint")

    def __init__(self, key: ContextKey, request: ActivityRequest) -> None:
        self.key = key
        self.customer = request.customer
        self.touchpoint = request.touchpoint
        self.properties = request.properties
        self.device = request.device
        self.batches: deque[Batch] = deque()  # not yet sent; all but the last are due
        self.busy = False  # a request of this context is queued for a slot or in flight


class Batch:
    """One buffer of a context's activities, sent as one request."""

    __slots__ = ("activities", "context", "deadline", "deliveries", "reason", "seq")

    def __init__(self, context: Context, seq: int, deadline: float) -> None:
        self.context = context
        self.seq = seq
        self.deadline = deadline
        self.activities: list[Activity] = []
        self.deliveries: list[Delivery] = []
        self.reason: str | None = None  # set when the buffer is due
