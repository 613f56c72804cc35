"""Token manager: one OAuth2 client-credentials token per client, refreshed single-flight.

- Single-flight: however many calls need a token at once, one token request is in flight; waiters
  share it through ``asyncio.shield`` so a cancelled waiter never cancels the refresh.
- Proactive: inside the *soft* window before expiry (its start jittered so many clients do not
  refresh in step) a background refresh starts while callers keep using the valid token; only in the
  *hard* window (the last seconds) do callers wait for the new token.
- Reactive: :meth:`TokenManager.invalidate` drops the token only if it is still the one that was
  sent, so a burst of 401s from one revoked token causes one refresh, not one per response.

A failed token request fails the calls waiting for it, whose own requests were never sent: the
error they get says so. A transport failure (reset, timeout) is a ``TransportError`` with
``request_sent=False``, whatever became of the token request itself; an answer without a usable
token (``ResponseFormatError`` from the wire module) is an ``AuthenticationError``, since a
``ResponseFormatError`` from an API call means "applied, answer unreadable"; a status error keeps
its class and says it came from the token endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

import attrs

from ._errors import (
    APIStatusError,
    AuthenticationError,
    MXOError,
    ResponseFormatError,
    TransportError,
    status_error,
)
from ._errors import TimeoutError as MXOTimeoutError
from ._events import EventHandler, TokenRefreshed
from ._wire import TokenGrant

__all__ = ["Token", "TokenManager"]

logger = logging.getLogger("mxo_async")


@attrs.frozen(eq=False)
class Token:
    """An access token with its lifetime on the manager's monotonic clock.

    Compared by identity: two fetches of the same string are still two tokens. ``value`` and the
    ready-made ``authorization`` header never appear in a repr.
    """

    value: str = attrs.field(repr=False)
    expires_at: float
    refresh_at: float
    hard_at: float
    authorization: str = attrs.field(repr=False)


class TokenManager:
    """Fetches, caches and refreshes the access token.

    Args:
        fetch: performs the token request (with its own retries) and returns the grant.
        default_lifetime: assumed lifetime when the grant has no ``expires_in``.
        soft_window: refresh in the background when less than this is left (seconds), capped at
            a fifth of the lifetime for short-lived tokens.
        hard_window: callers wait for a new token when less than this is left, capped at a
            twentieth of the lifetime.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[TokenGrant]],
        *,
        default_lifetime: float = 3600.0,
        soft_window: float = 300.0,
        hard_window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_event: EventHandler | None = None,
    ) -> None:
        self._fetch = fetch
        self._default_lifetime = default_lifetime
        self._soft_window = soft_window
        self._hard_window = hard_window
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._on_event = on_event
        self._token: Token | None = None
        self._refresh: asyncio.Task[Token] | None = None
        self.refreshes = 0

    @property
    def current(self) -> Token | None:
        """The cached token, if any (it may be inside its refresh windows)."""
        return self._token

    def peek(self) -> Token | None:
        """The cached token if it is usable as is (no refresh due), else None: then await :meth:`get`.

        The hot path of every call: no coroutine, no task, one clock read.
        """
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token
        return None

    async def get(self) -> Token:
        """Return a usable token, fetching or refreshing it as the windows require."""
        token = self._token
        if token is not None:
            now = self._clock()
            if now < token.refresh_at:
                return token
            if now < token.hard_at:
                self._start_refresh("proactive")
                return token
        return await asyncio.shield(self._start_refresh("expired" if token else "initial"))

    def invalidate(self, token: Token) -> None:
        """Forget ``token`` after a 401, unless a newer token has replaced it already."""
        if self._token is token:
            self._token = None

    async def aclose(self) -> None:
        """Cancel a refresh in flight (used when the client closes)."""
        task, self._refresh = self._refresh, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _start_refresh(self, reason: str) -> asyncio.Task[Token]:
        task = self._refresh
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run_refresh(reason))
            task.add_done_callback(self._refresh_done)
            self._refresh = task
        return task

    def _refresh_done(self, task: asyncio.Task[Token]) -> None:
        if self._refresh is task:
            self._refresh = None
        if task.cancelled():
            return
        error = task.exception()  # retrieved here so a background failure is never "unretrieved"
        if error is not None:
            logger.warning("token refresh failed: %s", type(error).__name__)

    async def _run_refresh(self, reason: str) -> Token:
        started = self._clock()
        try:
            grant = await self._fetch()
        except MXOError as error:
            seen = _not_sent(error)
            if seen is error:
                raise
            raise seen from None  # its message quotes the token request's error
        lifetime = grant.expires_in if grant.expires_in is not None else self._default_lifetime
        soft = min(self._soft_window, lifetime / 5)
        hard = min(self._hard_window, lifetime / 20)
        # Jitter the start of the proactive refresh over the first half of the soft window.
        refresh_in = lifetime - soft + self._rng.uniform(0.0, soft / 2)
        # Measured from the request's start: the server's clock started before our response came.
        token = Token(
            value=grant.access_token,
            expires_at=started + lifetime,
            refresh_at=started + min(refresh_in, lifetime - hard),
            hard_at=started + lifetime - hard,
            authorization=f"Bearer {grant.access_token}",
        )
        self._token = token
        self.refreshes += 1
        logger.debug("access token obtained (%s), valid for %.0f s", reason, lifetime)
        if self._on_event is not None:
            self._on_event(TokenRefreshed(reason=reason, expires_in=lifetime))
        return token


def _not_sent(error: MXOError) -> MXOError:
    """``error`` of the token request as the calls waiting for the token see it (module doc)."""
    if isinstance(error, TransportError):
        cls = MXOTimeoutError if isinstance(error, MXOTimeoutError) else TransportError
        return cls(f"token request failed, request not sent: {error}", request_sent=False)
    if isinstance(error, ResponseFormatError):
        return AuthenticationError(
            f"token endpoint gave no usable token, request not sent: {error}"
        )
    if isinstance(error, APIStatusError):
        message = f"token endpoint: {error.message}" if error.message else "token endpoint"
        return status_error(error.status, message, error.retry_after, error.code)
    return error
