"""pytest fixtures for testing code that uses mxo_async, against the built-in emulator.

Loaded automatically (entry point ``pytest11``) once mxo-async is installed, in every pytest run
of every project on that Python: so it imports nothing but pytest when it loads, and it never
breaks a run. The fixtures need pytest-asyncio (``pip install "mxo-async[dev]"`` or
``pip install pytest-asyncio``); without it they fail with that advice, and only in the tests that
ask for them. They work with pytest-asyncio in ``auto`` and ``strict`` mode. Override
``mxo_emulator_config`` in a conftest to change the tenant, for example to inject faults::

    @pytest.fixture
    def mxo_emulator_config():
        return EmulatorConfig(faults=Faults(status_503=0.1, retry_after=0.01))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from mxo_async import MXOClient
    from mxo_async.emulator import Emulator, EmulatorConfig

__all__ = ["mxo_client", "mxo_emulator", "mxo_emulator_config"]

F = TypeVar("F", bound=Callable[..., Any])
_NEEDS_ASYNCIO = (
    "the mxo_emulator and mxo_client fixtures need pytest-asyncio: pip install pytest-asyncio"
)

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pytest-asyncio is not installed: fail only where the fixtures are used

    def _async_fixture(function: F) -> F:  # type: ignore[no-redef]
        @pytest.fixture(name=function.__name__)
        def unavailable() -> None:
            pytest.fail(_NEEDS_ASYNCIO, pytrace=False)

        return unavailable  # type: ignore[return-value]


@pytest.fixture
def mxo_emulator_config() -> EmulatorConfig:
    """The emulator's configuration: test credentials, one-hour tokens, no faults."""
    from mxo_async.emulator import EmulatorConfig

    return EmulatorConfig()


@_async_fixture
async def mxo_emulator(mxo_emulator_config: EmulatorConfig) -> AsyncIterator[Emulator]:
    """A running emulator on a free loopback port, closed after the test."""
    from mxo_async.emulator import Emulator

    async with Emulator(mxo_emulator_config) as emulator:
        yield emulator


@_async_fixture
async def mxo_client(mxo_emulator: Emulator) -> AsyncIterator[MXOClient]:
    """An ``MXOClient`` connected to ``mxo_emulator``, closed after the test."""
    from mxo_async import MXOClient

    async with MXOClient(
        base_url=mxo_emulator.base_url,
        site_key=mxo_emulator.site_key,
        client_id=mxo_emulator.client_id,
        client_secret=mxo_emulator.client_secret,
        customer_key_attribute=mxo_emulator.config.key_attribute,
    ) as client:
        yield client
