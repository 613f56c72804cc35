"""The fleet's access token in Redis: read it, or take the lock and fetch it for everyone."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .._wire import TokenGrant
from . import _scripts
from ._base import FAILURES, text

if TYPE_CHECKING:
    from ._link import Link

__all__ = ["TokenStore"]

_TOKEN_MIN_LEFT = 0.5  # s; a cached token closer than this to its expiry is not handed out
_TOKEN_LOCK_TTL = 15.0  # s; another process takes over a fetch whose fetcher died
_DEFAULT_TOKEN_TTL = 300.0  # s to cache a token whose grant had no expires_in


class TokenStore:
    """``SharedTokens`` for one link: Redis round trips go through the link (and its fallback)."""

    def __init__(self, link: Link) -> None:
        self._link = link

    async def get(
        self, fetch: Callable[[], Awaitable[TokenGrant]], avoid: str | None
    ) -> TokenGrant:
        link = self._link
        if not link.sharing:
            return await fetch()
        keys = link.keys
        owner = secrets.token_hex(8)
        delay = 0.01
        args = [avoid or "", int(_TOKEN_MIN_LEFT * 1000), owner, int(_TOKEN_LOCK_TTL * 1000)]
        try:
            while True:
                reply = await link.call(_scripts.READ_GRANT, [keys.token, keys.lock], args)
                if int(reply[0]) == 1:
                    return TokenGrant(text(reply[1]), int(reply[2]) / 1000)
                if int(reply[0]) == 0:
                    break  # ours to fetch
                await link.sleep(delay)  # another process is fetching: its token lands soon
                delay = min(delay * 1.5, 0.2)
        except FAILURES as error:
            link.lost(error)
            return await fetch()
        started = link.clock()
        try:
            grant = await fetch()
        except BaseException:
            link.chore(link.call(_scripts.UNLOCK, [keys.lock], [owner]))
            raise
        lifetime = grant.expires_in if grant.expires_in is not None else _DEFAULT_TOKEN_TTL
        ttl_ms = int((lifetime - (link.clock() - started)) * 1000)
        if ttl_ms > 0:
            args = [grant.access_token, ttl_ms, owner, keys.channel]
            link.chore(link.call(_scripts.CACHE_GRANT, [keys.token, keys.lock], args))
        return grant

    def invalidate(self, value: str) -> None:
        link = self._link
        if link.sharing:
            link.chore(link.call(_scripts.UNLOCK, [link.keys.token], [value]))
