"""The seam between a client and a fleet coordinator (``mxo_async.redis.RedisCoordinator``).

A coordinator is attached once per client: it learns the tenant (base URL, site key, client id)
and the client's limits, and hands back a :class:`FleetLink`. The client then runs a
:class:`SharedThrottle` (rate permits, pause and cuts go through the link's limiter while it is
``sharing``; otherwise it is the plain throttle at the process's share of the rate) and, with a
shared token, a :class:`SharedTokenManager`. The core never imports ``redis``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._auth import Token, TokenManager
from ._clock import Clock
from ._config import Limits
from ._events import EventHandler
from ._ratecontrol import Undo
from ._throttle import Signal, Throttle
from ._wire import Endpoints, TokenGrant

__all__ = [
    "Coordinator",
    "FleetLink",
    "SharedLimiter",
    "SharedThrottle",
    "SharedTokenManager",
    "SharedTokens",
    "join_fleet",
]


class SharedLimiter(Protocol):
    """Shared rate, pause and adaptation, as the throttle consults them."""

    @property
    def sharing(self) -> bool:
        """True while the shared state is reachable; False: the throttle runs on its own."""
        ...

    def bind(self, throttle: SharedThrottle) -> None:
        """Called once: the limiter pauses ``throttle`` when another process heard a pause."""
        ...

    def try_take(self) -> bool:
        """Take a shared permit usable now, without suspending (the hot path)."""
        ...

    def wait_time(self, now: float) -> float:
        """0 when a permit is usable at ``now`` (then :meth:`take` it), else how long to wait."""
        ...

    def take(self) -> None:
        """Consume the permit :meth:`wait_time` found."""
        ...

    def ready(self, now: float) -> int:
        """How many permits are usable at ``now`` without waiting."""
        ...

    async def wait(self, delay: float) -> None:
        """Sleep up to ``delay``, waking early when new permits arrive or sharing stops."""
        ...

    def record(self, signal: Signal) -> None:
        """Count an attempt's outcome for the fleet's measurements."""
        ...

    def pause(self, seconds: float) -> None:
        """Tell every process of the fleet to pause for ``seconds``."""
        ...

    def cut(self, pressure: float) -> None:
        """Ask for a cut of the shared rate (applied at most once per shared cooldown)."""
        ...

    @property
    def adaptive_rate(self) -> float | None:
        """The fleet's adaptive rate where it binds, else None: what a cut's probe may restore."""
        ...

    def restore(self, rate: float | None) -> None:
        """Undo a storm's cuts of the shared rate: back to ``rate`` (None: no adaptive rate)."""
        ...


class SharedTokens(Protocol):
    """A token cache shared by the fleet."""

    async def get(
        self, fetch: Callable[[], Awaitable[TokenGrant]], avoid: str | None
    ) -> TokenGrant:
        """The fleet's cached token unless it is ``avoid``, else one fetched once for the fleet
        (by calling ``fetch``, also when the shared store is unreachable)."""
        ...

    def invalidate(self, value: str) -> None:
        """Drop the cached token after a 401, only if it is still ``value``."""
        ...


class FleetLink(Protocol):
    """One client's connection to the fleet's shared state."""

    @property
    def limiter(self) -> SharedLimiter: ...

    @property
    def tokens(self) -> SharedTokens | None:
        """The fleet's token cache, or None when tokens are not shared."""
        ...

    @property
    def local_limits(self) -> Limits:
        """What the client's own throttle applies while the shared state is unreachable."""
        ...

    async def start(self) -> None:
        """Check the shared store and start sharing (raises on a misconfigured store)."""
        ...

    async def aclose(self) -> None:
        """Stop background work."""
        ...


class Coordinator(Protocol):
    """Something a client shares its limits and token through (``MXOClient(coordinator=)``)."""

    def attach(
        self,
        *,
        base_url: str,
        site_key: str,
        client_id: str,
        limits: Limits,
        on_event: EventHandler | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> FleetLink:
        """Connect one client (its tenant and limits) to the fleet."""
        ...


class SharedThrottle(Throttle):
    """A :class:`Throttle` whose rate, pause and cuts are the fleet's while the limiter shares.

    Concurrency (AIMD) stays per process. Not sharing, it is the plain throttle (at the limits it
    was given: the process's share of the fleet's rate).
    """

    def __init__(self, limits: Limits, shared: SharedLimiter, **kwargs: Any) -> None:
        # Waits for a rate permit wake early when a lease lands (the base sleeps the full delay).
        super().__init__(limits, sleep=shared.wait, **kwargs)
        self._shared = shared
        shared.bind(self)

    def try_acquire(self) -> bool:
        shared = self._shared
        if not shared.sharing:
            return super().try_acquire()
        if (
            self._in_flight < self._limit
            and self._paused_until is None
            and not self._queue
            and shared.try_take()
        ):
            self._in_flight += 1
            return True
        return False

    def _held(self, now: float) -> tuple[str, float] | None:
        shared = self._shared
        if not shared.sharing:
            return super()._held(now)
        if self._paused_until is not None:
            if now < self._paused_until:
                return "pause", self._paused_until - now
            self._paused_until = None
        if self._in_flight >= self._limit:
            return "concurrency", 0.0
        delay = shared.wait_time(now)
        return None if delay <= 0 else ("rate", delay)

    def _wake_head(self) -> None:
        # Leased permits come in handfuls: wake as many waiters as can go now, not one per turn
        # of the event loop (one at a time, the queue outlives the wait that formed it and every
        # later request queues too). They run in queue order and each still checks _held.
        queue = self._queue
        shared = self._shared
        if not shared.sharing or self._paused_until is not None or len(queue) < 2:
            super()._wake_head()
            return
        room = min(self._limit - self._in_flight, shared.ready(self._clock()))
        for waiter in itertools.islice(queue, max(1, room)):
            if not waiter.future.done():
                waiter.future.set_result(None)

    def _grant(self) -> None:
        if self._shared.sharing:
            self._shared.take()
            self._in_flight += 1
        else:
            super()._grant()

    def release(self, signal: Signal) -> None:
        self._shared.record(signal)
        super().release(signal)

    def _grow_rate(self, now: float, measured: float) -> None:
        if not self._shared.sharing:  # the fleet's rate regrows in the shared state
            super()._grow_rate(now, measured)

    def _cut(self, now: float, measured: float, pressure: float) -> None:
        if not self._shared.sharing:
            super()._cut(now, measured, pressure)
            return
        # Concurrency is this process's own; the rate is cut once for the fleet. The cut is
        # probed here as the plain throttle probes its own: pushback that does not fall with the
        # fleet's rate (faults, not a capacity) gets the fleet's rate restored.
        self._pushback.cut(pressure, now, (self._limit, self._shared.adaptive_rate))
        self._epoch_left = self._in_flight
        self._last_cut = now
        self._successes = 0
        self._set_limit(max(self._min, self._limit // 2), "overload")
        self._shared.cut(pressure)

    def _undo_cut(self, now: float, undo: Undo) -> None:
        if not self._shared.sharing:
            super()._undo_cut(now, undo)
            return
        limit, rate = undo
        self._set_limit(max(limit, self._limit), "restored")
        self._shared.restore(rate)

    def pause(self, seconds: float, *, broadcast: bool = True) -> None:
        """Pause this process; unless the pause came from the fleet, pause the fleet too."""
        if broadcast and seconds > 0:
            self._shared.pause(seconds)
        super().pause(seconds)


class SharedTokenManager(TokenManager):
    """A :class:`TokenManager` that asks the fleet's cache before fetching a token itself."""

    def __init__(
        self, fetch: Callable[[], Awaitable[TokenGrant]], shared: SharedTokens, **kwargs: Any
    ) -> None:
        super().__init__(self._fetch_shared, **kwargs)
        self._fetch_own = fetch
        self._shared = shared
        self._revoked: str | None = None  # the last token a 401 rejected: never take it back

    async def _fetch_shared(self) -> TokenGrant:
        current = self.current
        avoid = current.value if current is not None else self._revoked
        return await self._shared.get(self._fetch_own, avoid)

    def invalidate(self, token: Token) -> None:
        if self.current is token:
            self._revoked = token.value
            self._shared.invalidate(token.value)
        super().invalidate(token)


def join_fleet(
    coordinator: Coordinator,
    endpoints: Endpoints,
    client_id: str,
    limits: Limits,
    fetch_token: Callable[[], Awaitable[TokenGrant]],
    *,
    token_lifetime: float,
    on_event: EventHandler | None,
    clock: Clock,
) -> tuple[FleetLink, TokenManager, Throttle]:
    """Attach a client to ``coordinator``: its link, token manager and throttle."""
    link = coordinator.attach(
        base_url=endpoints.base_url,
        site_key=endpoints.site_key,
        client_id=client_id,
        limits=limits,
        on_event=on_event,
        sleep=clock.sleep,
    )
    shared = link.tokens
    options: dict[str, Any] = {
        "default_lifetime": token_lifetime,
        "on_event": on_event,
        "clock": clock.now,
    }
    tokens = (
        TokenManager(fetch_token, **options)
        if shared is None
        else SharedTokenManager(fetch_token, shared, **options)
    )
    # Its waits go through the shared limiter, which sleeps on the clock given to attach().
    throttle = SharedThrottle(link.local_limits, link.limiter, on_event=on_event, clock=clock.now)
    return link, tokens, throttle
