"""Every credential this client has sent, in every form a server could echo it back in.

An error message quotes a short excerpt of what the server answered, and servers (proxies above
all) echo requests: headers, bodies, URLs. So before a message leaves the library, every form of
every credential the client sent is taken out of it: the client secret, the Basic credentials
(base64 of the form-encoded ``id:secret``), and each access token still in use — raw, JSON-escaped
(``\\/``, ``\\u00e9``) and percent-encoded. Excerpts are cut from *decoded* JSON, so the
redaction runs on the decoded text, where an escaped echo has become the plain secret again.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from urllib.parse import quote, quote_plus

from ._errors import APIStatusError, AuthenticationError, MXOError, TransportError

__all__ = ["REDACTED", "Secrets"]

REDACTED = "***"
# Tokens kept after they were replaced: a response to a request sent with an older token (still
# valid at the server) can arrive after a proactive refresh.
_TOKENS_KEPT = 4
# Shorter values would blank out ordinary words of messages; no real secret or token is this short.
_MIN_LENGTH = 6


def _forms(value: str) -> set[str]:
    """The ways ``value`` can appear in a decoded or raw answer."""
    escaped = json.dumps(value)[1:-1]
    return {
        value,
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
    }


class Secrets:
    """The credentials of one client, and :meth:`redact` / :meth:`scrub` to take them out."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        basic = base64.b64encode(pair).decode("ascii")
        self._fixed = {client_secret, basic, base64.b64encode(pair.replace(b"+", b" ")).decode()}
        self._tokens: deque[str] = deque(maxlen=_TOKENS_KEPT)
        self._forms: list[str] = []
        self._rebuild()

    def add_token(self, token: str) -> None:
        """Remember an access token the client sends (the oldest beyond a few is forgotten)."""
        if token not in self._tokens:
            self._tokens.append(token)
            self._rebuild()

    def redact(self, text: str) -> str:
        """``text`` with every form of every credential replaced by ``***``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def scrub(self, error: MXOError) -> MXOError:
        """``error`` with its message redacted (the same object when there was nothing to take out)."""
        text = str(error)
        if self.redact(text) == text:
            return error
        clean: MXOError
        if isinstance(error, APIStatusError):
            clean = type(error)(
                error.status, self.redact(error.message), error.retry_after, error.code
            )
        elif isinstance(error, AuthenticationError):
            clean = AuthenticationError(self.redact(text), error.status)
        elif isinstance(error, TransportError):
            clean = type(error)(self.redact(text), request_sent=error.request_sent)
        else:
            return error  # other errors never quote what a server said
        clean.attempts = error.attempts
        return clean

    def _rebuild(self) -> None:
        forms: set[str] = set()
        for value in (*self._fixed, *self._tokens):
            forms |= _forms(value)
        # Longest first, so a token is not half-replaced through a shorter overlapping form.
        self._forms = sorted((f for f in forms if len(f) >= _MIN_LENGTH), key=len, reverse=True)
