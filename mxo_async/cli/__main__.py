"""``python -m mxo_async.cli``."""

from __future__ import annotations

from mxo_async.cli import main

if __name__ == "__main__":
    main()
