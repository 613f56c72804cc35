"""The ``mxo-async`` command line (extra ``cli``: click and rich).

Run ``mxo-async --help``; ``python -m mxo_async.cli`` works too.
"""

from __future__ import annotations

from ._app import cli, main

__all__ = ["cli", "main"]
