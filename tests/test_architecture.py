"""The README's Architecture section matches the code: every module it names exists."""

from __future__ import annotations

import pathlib
import re

import mxo_async

PACKAGE = pathlib.Path(mxo_async.__file__).parent
README = PACKAGE.parent / "README.md"


def architecture_section() -> str:
    text = README.read_text()
    start = text.index("## Architecture")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_module_the_architecture_names_exists() -> None:
    """Each ``_name.py``, ``_name/`` and ``pkg/file.py`` the section mentions is in the package."""
    names = set(
        re.findall(r"(?<![\w/])((?:_?\w+/)*_?\w+\.py|_?\w+/)(?=[\s`:,)]|$)", architecture_section())
    )
    missing = sorted(name for name in names if not (PACKAGE / name).exists())
    assert [] == missing
    assert len(names) > 20


def test_every_function_on_the_call_path_exists() -> None:
    """Each ``file.py:Class.method`` of the send_activity path is defined in that file."""
    hops = re.findall(r"`([\w/]+\.py):([\w.]+)`", architecture_section())
    assert 8 <= len(hops) <= 12
    for path, qualified in hops:
        source = (PACKAGE / path).read_text()
        name = qualified.split(".")[-1]
        assert re.search(rf"(def|class) {name}\b", source), f"{path}:{qualified}"
