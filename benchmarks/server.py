"""The benchmark servers, each run in its own process.

* ``lean``: a minimal aiohttp.web app (this module, ``python -m benchmarks.server``) answering the
  token endpoint and ``POST .../activity`` with the docs/wire-contract.md shapes and a constant body. It checks
  for a Bearer header and reads the request body, nothing more, so the client is what is measured.
* ``emulator``: ``python -m mxo_async.emulator --no-keep-activities`` (validates every request,
  counts, keeps per-customer aggregates): closer to a real tenant, costlier per request.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import TracebackType

import orjson
from aiohttp import web

from ._common import CLIENT_ID, CLIENT_SECRET, SITE_KEY, split_cpus

TOKEN = orjson.dumps({"access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600})
ACCEPTED = orjson.dumps({"tid": "a08b10a4-ead9-7667-9116-add167624b57", "errors": []})
UNAUTHORIZED = orjson.dumps({"errorCode": "GENERAL", "errorMessage": "missing bearer token"})


async def _token(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=TOKEN, content_type="application/json")


async def _activity(request: web.Request) -> web.Response:
    await request.read()
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return web.Response(status=401, body=UNAUTHORIZED, content_type="application/json")
    return web.Response(body=ACCEPTED, content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/one/oauth2token", _token)
    app.router.add_post("/one/oauth2/rt/api/{version}/customer/{site_key}/activity", _activity)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """Start a benchmark server (``lean`` or ``emulator``) in a child process; stop it on exit."""

    def __init__(
        self, kind: str = "lean", *, token_ttl: float | None = None, pin: bool = False
    ) -> None:
        if kind not in ("lean", "emulator"):
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._token_ttl = token_ttl
        self._pin = pin
        self._affinity: set[int] | None = None  # this process's CPUs before pinning
        self.placement = "not pinned"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.kind == "lean":
            return [sys.executable, "-m", "benchmarks.server", "--port", str(self.port)]
        command = [
            sys.executable,
            "-m",
            "mxo_async.emulator",
            "--port",
            str(self.port),
            "--no-keep-activities",
            "--site-key",
            SITE_KEY,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ]
        if self._token_ttl is not None:
            command += ["--token-ttl", str(self._token_ttl)]
        return command

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        split = split_cpus() if self._pin else None
        if split is not None:
            # The server on its own CPU; this process and the runners it starts (which inherit
            # the affinity) on the others.
            clients, server = split
            os.sched_setaffinity(self._process.pid, server)
            self._affinity = os.sched_getaffinity(0)
            os.sched_setaffinity(0, clients)
            self.placement = (
                f"server on CPU {min(server)}, clients on CPU {','.join(map(str, sorted(clients)))}"
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"{self.kind} server exited early: {error}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.kind} server did not start within 20 s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)
            self._affinity = None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def cpu_seconds(self) -> float:
        """CPU time the server process used so far (user + system, from /proc)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def serving(kind: str = "lean", token_ttl: float | None = None) -> Iterator[ServerProcess]:
    with ServerProcess(kind, token_ttl=token_ttl) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    web.run_app(
        make_app(), host=args.host, port=args.port, access_log=None, print=None, handle_signals=True
    )


if __name__ == "__main__":
    main()
