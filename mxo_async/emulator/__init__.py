"""A built-in MXO tenant for tests, demos and benchmarks (an aiohttp.web server on loopback).

It speaks the wire contract v2 (docs/wire-contract.md) as strictly as the vendor's spec; every request body is
checked against ``customer_api_requests.schema.json`` (needs the ``emulator`` extra: jsonschema).

Importing this package starts nothing; see :class:`Emulator` and :func:`run_emulator`.
"""

from __future__ import annotations

from ._config import Catalogue, Counters, EmulatorConfig
from ._faults import Faults
from ._server import Emulator, EmulatorStartError, run_emulator
from ._store import StoredCustomer

__all__ = [
    "Catalogue",
    "Counters",
    "Emulator",
    "EmulatorConfig",
    "EmulatorStartError",
    "Faults",
    "StoredCustomer",
    "run_emulator",
]
