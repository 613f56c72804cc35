"""Helpers of the stream-worker tests: worker processes run as the real command line
(``python -m mxo_async.cli ... worker ingest|erase``) against an emulator in the test process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from mxo_async.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
GROUP = "ingest"


def target_args(emulator: Emulator) -> list[str]:
    return [
        *("--base-url", emulator.base_url, "--site-key", emulator.site_key),
        *("--client-id", emulator.client_id, "--client-secret", emulator.client_secret),
    ]


class WorkerProcess:
    """One ``mxo-async worker ...`` process; its stdout's last line is its stats (JSON)."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def start(cls, emulator: Emulator, name: str, *command: str) -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "mxo_async.cli", *target_args(emulator), "worker", *command),
            *("--consumer", name, "--status-interval", "1"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        return cls(process, name)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)

    async def finish(self, within: float = 60) -> tuple[int, dict[str, Any] | None, str]:
        """Exit status, final stats (None if it printed none) and stderr."""
        out, err = await asyncio.wait_for(self.process.communicate(), within)
        lines = out.decode().strip().splitlines()
        stats = json.loads(lines[-1]) if lines else None
        assert self.process.returncode is not None
        return self.process.returncode, stats, err.decode()

    async def close(self) -> None:
        """Kill it if it still runs; print the end of its stderr (shown when a test fails)."""
        if self.process.returncode is None:
            self.process.kill()
            _, err = await self.process.communicate()
            print(
                f"--- {self.name} (killed at the end) ---",
                *err.decode().splitlines()[-8:],
                sep="\n",
            )


async def dead_letters(redis: Redis, stream: str) -> list[dict[str, str]]:
    """The fields of each entry of ``<stream>:dead``, decoded."""
    entries: Any = await redis.xrange(f"{stream}:dead")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def held_by(redis: Redis, stream: str, group: str, consumer: str) -> int:
    """Entries ``consumer`` holds (delivered, not acknowledged) in ``group``."""
    rows = await redis.xpending_range(stream, group, "-", "+", 1_000_000, consumername=consumer)
    return len(rows)


async def wait_until(predicate: Any, within: float, poll: float = 0.1) -> None:
    """Poll the async ``predicate`` until it is true (an AssertionError after ``within`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(poll)
