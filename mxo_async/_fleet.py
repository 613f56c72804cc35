"""The seam between a client and a fleet coordinator (``mxo_async.redis.RedisCoordinator``).

A coordinator is attached once per client: it learns the tenant (base URL, site key, client id)
and the client's limits, and hands back a :class:`FleetLink` whose limiter plugs into the
throttle and whose token store plugs into the token manager. The core never imports ``redis``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from ._auth import SharedTokens
from ._config import Limits
from ._events import EventHandler
from ._throttle import SharedLimiter

__all__ = ["Coordinator", "FleetLink"]


class FleetLink(Protocol):
    """One client's connection to the fleet's shared state."""

    @property
    def limiter(self) -> SharedLimiter:
        """Shared rate, pause and adaptation, consulted by the client's throttle."""
        ...

    @property
    def tokens(self) -> SharedTokens | None:
        """The fleet's token cache, or None when tokens are not shared."""
        ...

    @property
    def local_limits(self) -> Limits:
        """The limits the client's own throttle applies while the shared state is unreachable."""
        ...

    async def start(self) -> None:
        """Check the shared store and start sharing (raises on a misconfigured store)."""
        ...

    async def aclose(self) -> None:
        """Stop background work and release what this process holds."""
        ...


class Coordinator(Protocol):
    """Something a client can share its limits and token through (``coordinator=``)."""

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
