"""What the coordinator's modules share: the key layout, the error, the failures that mean
"Redis is unreachable"."""

from __future__ import annotations

import attrs
from redis.exceptions import RedisError

from .._errors import MXOError

__all__ = ["FAILURES", "CoordinatorError", "Keys", "text"]

# Any of these means the shared state is out of reach for now: run alone, reconnect later.
FAILURES = (RedisError, OSError, TimeoutError)


class CoordinatorError(MXOError):
    """The fleet's Redis is reachable but unusable: too old, a script rejected, access denied."""


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@attrs.frozen
class Keys:
    """The keys of one tenant in one namespace: one hash tag, one Redis Cluster slot."""

    namespace: str
    tenant: str

    def key(self, name: str) -> str:
        return f"mxo:{{{self.namespace}}}:{self.tenant}:{name}"

    @property
    def rate(self) -> str:
        return self.key("rate")

    @property
    def pause(self) -> str:
        return self.key("pause")

    @property
    def token(self) -> str:
        return self.key("token")

    @property
    def lock(self) -> str:
        return self.key("token-lock")

    @property
    def channel(self) -> str:
        return self.key("events")
