"""pytest fixtures for testing code that uses mxo_async, against the built-in emulator.

Loaded automatically (entry point ``pytest11``) once mxo-async is installed. Works with
pytest-asyncio in ``auto`` and ``strict`` mode. Override ``mxo_emulator_config`` in a conftest to
change the tenant, for example to inject faults::

    @pytest.fixture
    def mxo_emulator_config():
        return EmulatorConfig(faults=Faults(status_503=0.1, retry_after=0.01))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from mxo_async import MXOClient

    from . import Emulator, EmulatorConfig

__all__ = ["mxo_client", "mxo_emulator", "mxo_emulator_config"]


@pytest.fixture
def mxo_emulator_config() -> EmulatorConfig:
    """The emulator's configuration: test credentials, one-hour tokens, no faults."""
    from . import EmulatorConfig

    return EmulatorConfig()


@pytest_asyncio.fixture
async def mxo_emulator(mxo_emulator_config: EmulatorConfig) -> AsyncIterator[Emulator]:
    """A running emulator on a free loopback port, closed after the test."""
    from . import Emulator

    async with Emulator(mxo_emulator_config) as emulator:
        yield emulator


@pytest_asyncio.fixture
async def mxo_client(mxo_emulator: Emulator) -> AsyncIterator[MXOClient]:
    """An ``MXOClient`` connected to ``mxo_emulator``, closed after the test."""
    from mxo_async import MXOClient

    async with MXOClient(
        base_url=mxo_emulator.base_url,
        site_key=mxo_emulator.site_key,
        client_id=mxo_emulator.client_id,
        client_secret=mxo_emulator.client_secret,
    ) as client:
        yield client
