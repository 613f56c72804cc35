"""What an error means to a run of many items, told without leaking what was sent.

:func:`is_fatal` says whether every other item would hit it too (so the run stops at once);
:func:`describe_error` and :func:`describe_rejection` give the line a log, a dead letter or a
summary shows, with the customer's key and identifier values masked where the server echoed them.
The command line and the stream workers share them.
"""

from __future__ import annotations

import re

from ._errors import APIStatusError, AuthenticationError, ForbiddenError
from ._models import ActivityError, Customer

__all__ = ["describe_error", "describe_rejection", "is_fatal", "mask_echo"]


# errorCodes that say the request never reached a site this client may use.
_FATAL_CODES = frozenset({"INVALID_SITEKEY"})


def is_fatal(error: BaseException) -> bool:
    """True for errors that every other item would hit too, so the run should stop at once.

    Refused credentials, credentials without the permission (403) and an unknown site key.
    """
    if isinstance(error, AuthenticationError | ForbiddenError):
        return True
    return isinstance(error, APIStatusError) and error.code in _FATAL_CODES


def describe_error(error: BaseException, customer: Customer | None = None) -> str:
    """``TypeName: message`` for a log line or a dead-letter record.

    Only the server's own text (an :class:`APIStatusError`'s message) can repeat what was sent,
    so the customer's key and identifier values are masked there, as whole words
    (:func:`mask_echo`); the status, the errorCode and the library's own messages are shown as
    they are (they never hold identifiers).
    """
    name = type(error).__name__
    if isinstance(error, APIStatusError):
        label = f"HTTP {error.status} {error.code}" if error.code else f"HTTP {error.status}"
        message = mask_echo(error.message, customer)
        return f"{name}: {label}: {message}" if message else f"{name}: {label}"
    message = str(error)
    return f"{name}: {message}" if message else name


def describe_rejection(rejection: ActivityError, customer: Customer | None) -> str:
    """MXO's message about one activity it did not process, identifiers masked."""
    return mask_echo(rejection.message, customer) or "not processed by MXO"


def mask_echo(text: str, customer: Customer | None) -> str:
    """``text`` (a server's message) with the customer's key and identifier values masked
    where they appear as whole words.

    A value counts only when no letter or digit touches it on either side, so a key ``4`` is
    masked in ``no customer 4`` but ``HTTP 404`` stays readable.
    """
    if customer is None or not text:
        return text
    values = sorted({v for v in (customer.key, *customer.identifiers.values()) if v}, key=len)
    for value in reversed(values):  # longest first: a value inside another is masked with it
        if value in text:
            pattern = rf"(?<![^\W_]){re.escape(value)}(?![^\W_])"
            replacement = _masked(value).replace("\\", "\\\\")  # literal in re.sub
            text = re.sub(pattern, replacement, text)
    return text


def _masked(value: str) -> str:
    masked = Customer.by_key(value).masked()  # "key='a***e'"
    return masked.removeprefix("key=").strip("'")
