"""Starting the emulator from the command line: a port in use is one line and exit 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

COMMANDS = {
    "python -m mxo_async.emulator": [sys.executable, "-m", "mxo_async.emulator"],
    "mxo-async emulator": [sys.executable, "-m", "mxo_async.cli", "emulator"],
}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_port_in_use_is_one_line_and_exit_2(busy_port: int, command: str) -> None:
    """Either command says the address is in use, in one line, without a traceback."""
    run = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*COMMANDS[command], "--port", str(busy_port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 2 == run.returncode
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert 1 == len(lines), run.stderr
    assert "already in use" in lines[0]


def test_the_built_in_secret_is_printed_at_startup() -> None:
    """With the default credentials the startup lines say the test secret, so users can connect."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mxo_async.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    from mxo_async.emulator import EmulatorConfig

    assert f"client secret: {EmulatorConfig().client_secret}" in lines[1]
