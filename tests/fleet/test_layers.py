"""The fleet workers are library code: they never reach into the command line's modules."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import mxo_async.redis

REDIS_PACKAGE = pathlib.Path(mxo_async.redis.__file__).parent


def imported_modules(path: pathlib.Path) -> set[str]:
    """The modules one source file imports, relative imports resolved inside mxo_async.redis."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ["mxo_async", "redis"][: 2 - (node.level - 1)] if node.level else []
            names.add(".".join([*base, node.module or ""]).rstrip("."))
    return names


def test_no_module_of_the_redis_package_imports_the_cli() -> None:
    """No source file of mxo_async.redis imports mxo_async.cli (directly or relatively)."""
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith("mxo_async.cli"))
        for path in sorted(REDIS_PACKAGE.glob("*.py"))
    }
    assert {} == {name: found for name, found in offenders.items() if found}


def test_importing_the_workers_loads_no_cli_module() -> None:
    """A fresh interpreter importing mxo_async.redis has no mxo_async.cli module loaded."""
    code = (
        "import sys, mxo_async.redis; "
        "print(sorted(m for m in sys.modules if m.startswith('mxo_async.cli')))"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    assert "[]" == done.stdout.strip()
