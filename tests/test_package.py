"""The package's public face and layout rules."""

from __future__ import annotations

import pathlib
import re
import types

import mxo_async

PACKAGE = pathlib.Path(mxo_async.__file__).parent


def test_all_is_sorted() -> None:
    """__all__ is sorted as ruff sorts it (constants, classes, then the rest), for easy review."""

    def order(name: str) -> tuple[int, str]:
        rank = 0 if name.isupper() else 1 if name[0].isupper() else 2
        return rank, name

    assert sorted(mxo_async.__all__, key=order) == mxo_async.__all__


def test_all_is_complete() -> None:
    """Every public name the package exposes is listed in __all__, and every listed name exists."""
    exposed = {
        name
        for name, value in vars(mxo_async).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert exposed | {"__version__"} == set(mxo_async.__all__)


def test_design_names_are_public() -> None:
    """The names our public API promises are importable from the package."""
    contract = {
        "MXOClient", "Customer", "Activity", "ActivityRequest", "ActivityResult", "Identifier",
        "Erasure", "Outcome", "RetryPolicy", "Timeouts", "Limits", "MXOError", "ValidationError",
        "AuthenticationError", "APIStatusError", "BadRequestError", "UnauthorizedError",
        "ForbiddenError", "NotFoundError", "RateLimitedError", "ServerError", "TransportError",
        "TimeoutError", "AmbiguousDeliveryError", "ResponseFormatError", "Device",
        "ActivityError", "Structure", "RejectedActivitiesError",
    }  # fmt: skip
    assert set() == contract - set(mxo_async.__all__)


def test_only_the_transport_imports_aiohttp() -> None:
    """The sans-I/O core never imports aiohttp; only _transport.py does."""
    pattern = re.compile(r"^\s*(import aiohttp|from aiohttp)", re.MULTILINE)
    offenders = [
        p.name
        for p in PACKAGE.glob("*.py")
        if pattern.search(p.read_text()) and p.name != "_transport.py"
    ]
    assert [] == offenders


def test_py_typed_is_shipped() -> None:
    """The package declares its type hints (PEP 561)."""
    assert (PACKAGE / "py.typed").exists()
