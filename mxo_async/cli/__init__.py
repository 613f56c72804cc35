"""The ``mxo-async`` command line (extra ``cli``: click and rich).

Run ``mxo-async --help``; ``python -m mxo_async.cli`` works too. Importing this package does not
import click or rich, so the console script can say how to install them when they are missing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._app import cli

__all__ = ["cli", "main"]

# What the cli extra brings; without one of them the command explains how to install it.
_EXTRA_MODULES = frozenset({"click", "rich"})
INSTALL_HINT = 'mxo-async: the command line needs the "cli" extra: pip install "mxo-async[cli]"'


def main() -> None:
    """The console-script entry point."""
    try:
        from ._app import main as run
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
            raise
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2) from None
    run()


def __getattr__(name: str) -> object:
    if name == "cli":
        from ._app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
