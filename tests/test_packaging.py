"""What ships: the wheel and the sdist carry the license, one version, and the package data."""

from __future__ import annotations

import pathlib
import tarfile
import zipfile

import pytest
from hatchling.builders.sdist import SdistBuilder
from hatchling.builders.wheel import WheelBuilder

import mxo_async

ROOT = pathlib.Path(__file__).parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    (path,) = WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    out = tmp_path_factory.mktemp("sdist")
    (path,) = SdistBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    return tarfile.open(path)


def test_the_wheel_ships_the_license(wheel: zipfile.ZipFile) -> None:
    """The MIT license text is in the wheel's metadata."""
    names = [name for name in wheel.namelist() if name.endswith("/licenses/LICENSE")]
    assert 1 == len(names)
    assert "MIT License" in wheel.read(names[0]).decode()


def test_the_sdist_ships_the_license(sdist: tarfile.TarFile) -> None:
    """The sdist carries LICENSE at its root."""
    assert any(name.endswith("/LICENSE") for name in sdist.getnames())


def test_the_version_has_one_source(wheel: zipfile.ZipFile) -> None:
    """The wheel's metadata version is mxo_async.__version__."""
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    lines = wheel.read(metadata).decode().splitlines()
    assert f"Version: {mxo_async.__version__}" in lines
    assert "License-Expression: MIT" in lines


def test_the_wheel_ships_types_and_the_schema(wheel: zipfile.ZipFile) -> None:
    """py.typed and the emulator's request schema are package data in the wheel."""
    names = set(wheel.namelist())
    assert "mxo_async/py.typed" in names
    assert any(name.endswith(".schema.json") for name in names)


def test_the_user_agent_carries_the_version() -> None:
    """API requests name the library and its version, not aiohttp."""
    client = mxo_async.MXOClient("https://eu2.thunderhead.com", "SK", "id", "secret")
    try:
        assert f"mxo-async/{mxo_async.__version__}" == client._endpoints.json_headers["User-Agent"]
    finally:
        del client
