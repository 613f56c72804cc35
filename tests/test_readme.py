"""The README's Python examples run as written, against the built-in emulator.

Each ```python block of README.md is taken from the file itself: the quick start with its client
pointed at the emulator, the fragments inside an async function with the names they assume.
"""

from __future__ import annotations

import inspect
import logging
import pathlib
import re
import textwrap
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest

import mxo_async
from mxo_async.emulator import Emulator, EmulatorConfig

README = pathlib.Path(__file__).parent.parent / "README.md"
BLOCKS: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def block(marker: str) -> str:
    """The one README Python block containing ``marker``."""
    found = [text for text in BLOCKS if marker in text]
    assert 1 == len(found), f"{len(found)} README blocks contain {marker!r}"
    return found[0]


def pointed_at(emu: Emulator) -> types.ModuleType:
    """mxo_async, except that every MXOClient talks to ``emu`` whatever URL and keys it is given."""

    class Client(mxo_async.MXOClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            for name in ("base_url", "site_key", "client_id", "client_secret"):
                kwargs.pop(name, None)
            super().__init__(emu.base_url, emu.site_key, emu.client_id, emu.client_secret, **kwargs)

    module = types.ModuleType("mxo_async")
    module.__dict__.update(vars(mxo_async), MXOClient=Client)
    return module


async def run_fragment(code: str, names: dict[str, object]) -> dict[str, object]:
    """Run a README fragment (which may use ``await``) as the body of an async function."""
    source = "async def __example():\n" + textwrap.indent(code, "    ") + "\n    return locals()\n"
    namespace: dict[str, object] = dict(names)
    exec(compile(source, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    example = namespace["__example"]
    assert inspect.iscoroutinefunction(example)
    result: dict[str, object] = await example()
    return result


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig()) as running:
        yield running


async def test_the_quick_start_runs(emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    """The quick start sends, reads a structure and erases, printing what the README says."""
    code = block("asyncio.run(main())")
    code = code.replace("import asyncio\n", "").replace("import mxo_async as mxo\n", "")
    code = code.replace("asyncio.run(main())", "")
    namespace: dict[str, object] = {"mxo": pointed_at(emu)}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    main = namespace["main"]
    assert inspect.iscoroutinefunction(main)
    await main()
    printed = capsys.readouterr().out.splitlines()
    assert 3 == len(printed)
    assert "True" == printed[2].split()[0]  # erasure.found
    assert 0 == len(emu.applied_activities())  # sent, then erased


def test_the_configuration_block_builds_a_client() -> None:
    """Every keyword the configuration block shows is accepted by MXOClient."""
    names: dict[str, object] = {
        "mxo": mxo_async,
        "base_url": "https://eu2.thunderhead.com",
        "site_key": "SK",
        "client_id": "id",
        "client_secret": "secret",
    }
    client = eval(block("token_lifetime="), names)  # noqa: S307 - our own README
    assert isinstance(client, mxo_async.MXOClient)


async def test_the_fan_out_example_runs(emu: Emulator) -> None:
    """The send_activities fragment streams every request to the emulator."""
    async with pointed_at(emu).MXOClient("", "", "", "") as client:
        await run_fragment(
            block("client.send_activities("),
            {
                "mxo": mxo_async,
                "client": client,
                "keys": [f"k{n}" for n in range(20)],
                "log": logging.getLogger("readme"),
            },
        )
    assert 20 == emu.counters.applied_activities


async def test_the_sweep_example_runs(
    emu: Emulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete_customers fragment erases every customer and writes its journal."""
    monkeypatch.chdir(tmp_path)
    for n in range(5):
        emu.add_customer(f"k{n}")
    customers = [mxo_async.Customer.by_key(f"k{n}") for n in range(5)]
    async with pointed_at(emu).MXOClient("", "", "", "") as client:
        await run_fragment(
            block('journal="erase.jsonl"'), {"client": client, "customers": customers}
        )
    assert 5 == mxo_async.summarize_journal(tmp_path / "erase.jsonl").erased


async def test_the_batcher_example_runs(emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    """The batcher fragment delivers its activity and prints the report's counts."""
    async with pointed_at(emu).MXOClient("", "", "", "") as client:
        await run_fragment(
            block("client.batcher("),
            {"mxo": mxo_async, "client": client, "alice": mxo_async.Customer.by_key("alice")},
        )
    assert "1 0 0 0 True" == capsys.readouterr().out.strip()


async def test_the_emulator_example_runs() -> None:
    """The emulator fragment runs as written (its own emulator, faults and counters)."""
    names = await run_fragment(block("emu.revoke_tokens()"), {"mxo": mxo_async})
    emulator = names["emu"]
    assert isinstance(emulator, Emulator)
    assert 1 == emulator.counters.applied_activities
