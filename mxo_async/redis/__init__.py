"""A fleet of processes sharing one MXO tenant's limits through Redis (extra ``redis``).

``MXOClient(..., coordinator=RedisCoordinator(redis, namespace="shop"))`` shares the request rate,
the ``Retry-After`` pause, the adaptive rate and (``share_token=True``) the access token with
every other process attached to the same namespace and tenant. See the README, "Running a fleet".
"""

from __future__ import annotations

from .._events import FleetSharingChanged
from ._coordinator import CoordinatorError, RedisCoordinator

__all__ = ["CoordinatorError", "FleetSharingChanged", "RedisCoordinator"]
