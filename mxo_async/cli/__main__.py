"""``python -m mxo_async.cli``."""

from __future__ import annotations

from ._app import main

if __name__ == "__main__":
    main()
