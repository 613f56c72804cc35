"""A real ``redis-server`` for the fleet tests: one on a free loopback port, or a 3-master cluster.

A missing redis-server skips the tests on a developer's machine and fails them in CI (``CI`` set):
a fleet test that silently did not run is worse than a red build.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["RedisServer", "free_port", "require_redis_server", "start_cluster"]


def require_redis_server() -> str:
    """The redis-server binary, or skip (no ``CI``) / fail (``CI`` set) when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + ": the fleet tests must run in CI")
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and below 65536 as well."""
    for _ in range(200):
        port = random.randrange(20000, 40000)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """One redis-server process without persistence; ``kill()`` is a SIGKILL, ``start()`` again
    brings it back on the same port, empty."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


def start_cluster(directory: Path, masters: int = 3) -> list[RedisServer]:
    """``masters`` cluster-enabled servers joined with ``redis-cli --cluster create``."""
    servers: list[RedisServer] = []
    try:
        for n in range(masters):
            node_dir = directory / f"node{n}"
            server = RedisServer(
                node_dir,
                free_cluster_port(),
                *(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                ),
                *("--cluster-node-timeout", "2000"),
            )
            servers.append(server)
            server.start()
        _join(servers)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _join(servers: list[RedisServer]) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is missing (it comes with redis-server: redis-tools)")
    subprocess.run(  # noqa: S603 - our own binary and arguments
        [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers), "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(  # noqa: S603
            [cli, "-p", str(servers[0].port), "cluster", "info"],
            capture_output=True,
            timeout=5,
            check=False,
        ).stdout
        if b"cluster_state:ok" in out:
            return
        time.sleep(0.1)
    raise RuntimeError("the Redis cluster did not become ready")
