"""The pytest11 plugin: loads in anybody's pytest run, and the README's fixture example works."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

README = pathlib.Path(__file__).parent.parent / "README.md"
# pytest-asyncio's own entry point is not there either in such a project.
NO_ASYNCIO_PLUGIN = ("-p", "no:asyncio", "-p", "no:cacheprovider", "-q")


def run_without_pytest_asyncio(project: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``project`` as if pytest-asyncio were not installed.

    A shim package that fails to import shadows it, and its entry point is disabled.
    """
    shim = project / "shim" / "pytest_asyncio"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError(\"No module named 'pytest_asyncio'\")\n")
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "pytest", *NO_ASYNCIO_PLUGIN, "test_project.py"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(shim.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def readme_fixture_example() -> str:
    """The README's example of a user's test using the fixtures."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    examples = [block for block in blocks if "def test_" in block and "mxo_client" in block]
    assert 1 == len(examples)
    return examples[0]


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_readme_fixture_example_passes(pytester: pytest.Pytester, mode: str) -> None:
    """The README's fixture example passes as written, in pytest-asyncio's strict and auto mode."""
    pytester.makepyfile(test_user=readme_fixture_example())
    result = pytester.runpytest_subprocess(
        *("-p", "no:cacheprovider", "-W", "error", "-o", f"asyncio_mode={mode}"),
        *("-o", "asyncio_default_fixture_loop_scope=function"),
    )
    result.assert_outcomes(passed=1)


def test_a_project_without_pytest_asyncio_is_not_broken(pytester: pytest.Pytester) -> None:
    """Without pytest-asyncio, an unrelated suite runs green with the plugin installed."""
    pytester.makepyfile(test_project="def test_plain() -> None:\n    assert 1 + 1 == 2\n")
    run = run_without_pytest_asyncio(pytester.path)
    assert 0 == run.returncode, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_without_pytest_asyncio_the_fixtures_say_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    """A test asking for mxo_client without pytest-asyncio fails with the install advice."""
    pytester.makepyfile(test_project="def test_uses(mxo_client) -> None:\n    pass\n")
    run = run_without_pytest_asyncio(pytester.path)
    assert 1 == run.returncode, run.stdout + run.stderr
    assert "pip install pytest-asyncio" in run.stdout
