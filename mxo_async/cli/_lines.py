"""Read input lazily: numbered lines from a file or stdin, a chunk at a time, never the whole file.

A regular file is read on the event loop (a 64 KiB read from disk takes microseconds). Anything
else (a pipe, a terminal) is read by a daemon thread, so the requests in flight keep running while
the producer is slow, and an aborted run never waits for stdin to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import stat
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import BinaryIO

import attrs

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINE_BYTES",
    "Line",
    "count_lines",
    "is_regular_file",
    "iter_lines",
    "open_input",
    "open_reader",
]

CHUNK_SIZE = 1 << 16
# A "line" longer than this is reported as invalid instead of being buffered without bound.
MAX_LINE_BYTES = 1 << 20
_EXCERPT = 200

Reader = Callable[[], Awaitable[bytes]]


@attrs.frozen
class Line:
    """One input line (without its line break), numbered from 1.

    ``error`` is set when the bytes are not a usable line (not UTF-8, or too long); ``text`` then
    holds a readable rendering (replacement characters, or the first bytes of an overlong line).
    """

    number: int
    text: str
    error: str | None = None


def is_regular_file(stream: BinaryIO) -> bool:
    """True when ``stream`` is backed by a regular file (size known, reads never block)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _has_fileno(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return True


def _read1(stream: BinaryIO) -> bytes:
    read1 = getattr(stream, "read1", None)
    data = read1(CHUNK_SIZE) if read1 is not None else stream.read(CHUNK_SIZE)
    return bytes(data)


class _ThreadReader:
    """Reads chunks in a daemon thread, one chunk per request, so memory stays bounded."""

    def __init__(self, stream: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop
        self._requests: queue.SimpleQueue[asyncio.Future[bytes] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mxo-async-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            future = self._requests.get()
            if future is None:
                return
            try:
                data = _read1(self._stream)
            except Exception as exc:  # reported to the awaiting coroutine
                self._call(_fail, future, exc)
                return
            self._call(_resolve, future, data)
            if not data:
                return

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        # The loop may be gone if the command ended while we were blocked in read().
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    async def read(self) -> bytes:
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._requests.put(future)
        return await future

    def close(self) -> None:
        self._requests.put(None)


def _resolve(future: asyncio.Future[bytes], data: bytes) -> None:
    if not future.done():
        future.set_result(data)


def _fail(future: asyncio.Future[bytes], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


@contextlib.asynccontextmanager
async def open_reader(stream: BinaryIO) -> AsyncIterator[Reader]:
    """Yield an async ``read()`` of the next chunk (``b""`` at the end) for ``stream``."""
    if is_regular_file(stream) or not _has_fileno(stream):

        async def read() -> bytes:
            await asyncio.sleep(0)  # a file never blocks: let the requests in flight run
            return _read1(stream)

        yield read
        return
    reader = _ThreadReader(stream, asyncio.get_running_loop())
    try:
        yield reader.read
    finally:
        reader.close()


async def iter_lines(read: Reader, *, skip_bom: bool = True) -> AsyncGenerator[Line, None]:
    """Split the chunks of ``read`` into numbered lines; ``\\r\\n`` and ``\\n`` both end a line."""
    pending = bytearray()
    number = 0
    overflow = False  # discarding the rest of an overlong line
    first = skip_bom
    while True:
        chunk = await read()
        if not chunk:
            break
        if first:
            first = False
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut < 0:
            if len(pending) > MAX_LINE_BYTES:
                if not overflow:
                    number += 1
                    yield _overlong(number, bytes(pending[:_EXCERPT]))
                overflow = True
                pending.clear()
            continue
        block = bytes(pending[:cut])
        del pending[: cut + 1]
        for raw in block.split(b"\n"):
            if overflow:  # the tail of a line already reported
                overflow = False
                continue
            number += 1
            yield _line(number, raw)
    if pending and not overflow:
        number += 1
        yield _line(number, bytes(pending))


def _line(number: int, raw: bytes) -> Line:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > MAX_LINE_BYTES:
        return _overlong(number, raw[:_EXCERPT])
    try:
        return Line(number, raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Line(number, raw.decode("utf-8", "replace"), f"not valid UTF-8 ({exc.reason})")


def _overlong(number: int, head: bytes) -> Line:
    text = head.decode("utf-8", "replace") + "..."
    return Line(number, text, f"line is longer than {MAX_LINE_BYTES} bytes")


@contextlib.contextmanager
def open_input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """Open ``path`` (``-``: stdin) for binary reading; also yield its line count when it is a
    regular file (for the progress bar), else None."""
    if path == "-":
        yield sys.stdin.buffer, None
        return
    with open(path, "rb") as stream:
        yield stream, count_lines(path) if is_regular_file(stream) else None


def count_lines(path: str) -> int:
    """Count the lines of a regular file (a last line without a line break counts too)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE * 16):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines if last == b"\n" else lines + 1
