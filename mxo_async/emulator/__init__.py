"""A built-in MXO tenant for tests, demos and benchmarks (an aiohttp.web server on loopback).

Importing this package starts nothing; see :class:`Emulator` and :func:`run_emulator`.
"""

from __future__ import annotations

from ._config import Counters, EmulatorConfig
from ._faults import Faults
from ._server import Emulator, run_emulator
from ._store import StoredCustomer

__all__ = [
    "Counters",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "StoredCustomer",
    "run_emulator",
]
