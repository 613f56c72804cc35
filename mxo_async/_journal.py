"""The GDPR erasure journal: a durable, resumable, auditable record of an erasure sweep.

One JSON line per settled customer, appended, flushed and fsynced *before* the sweep reports the
outcome, so every outcome a caller ever saw is on disk. Lines are written by one writer at a time
(group commit: lines that settle while a write is in progress go out together in the next
``write`` + ``fsync``), in a worker thread so the event loop never blocks on the disk.

On open, the last state of each customer wins. A torn or invalid *last* line (a crash mid-write) is
ignored and truncated away, so new lines never glue onto a fragment; that customer was never
reported and is simply retried. An invalid line anywhere else raises :class:`JournalError`.
Customers are matched by ``(tid, key)``. What is done is decided from the journal as loaded, so a
customer listed twice in one run is deleted twice (deletes are idempotent). A failed write makes
the journal refuse further lines, and the sweep raises that error after its calls in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from ._errors import MXOError
from ._fanout import FanOut, Progress
from ._models import Customer, Erasure, Identifier, Outcome

__all__ = [
    "ErasureJournal",
    "ErasureSweep",
    "JournalError",
    "build_erasure_sweep",
]

ERASED, NOT_FOUND, FAILED = "erased", "not_found", "failed"
_OUTCOMES = (ERASED, NOT_FOUND, FAILED)
_Key = tuple[str | None, str | None]
_Record = dict[str, Any]  # one parsed, checked journal line
Clock = Callable[[], datetime]


class JournalError(MXOError, ValueError):
    """The erasure journal cannot be read or written (``line`` names a corrupt line)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z``: ``2024-05-01T12:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode_line(outcome: Outcome[Customer, Erasure], moment: datetime) -> bytes:
    """The journal line (with its newline) recording one settled customer."""
    customer = outcome.item
    erasure, error = outcome.result, outcome.error
    if error is not None or erasure is None:
        state, tids, identifiers = FAILED, [], []
    else:
        state = ERASED if erasure.found else NOT_FOUND
        tids = list(erasure.tids)
        identifiers = [{"apiName": i.api_name, "value": i.value} for i in erasure.identifiers]
    record = {
        "customer": {"tid": customer.tid, "key": customer.key},
        "outcome": state,
        "tids": tids,
        "identifiers": identifiers,
        "attempts": outcome.attempts,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "time": format_time(moment),
    }
    return orjson.dumps(record) + b"\n"


def _check(record: object) -> tuple[_Key, str]:
    """Validate one parsed line; return the customer's key and its outcome."""
    if not isinstance(record, dict):
        raise TypeError("not a JSON object")
    customer = record.get("customer")
    if not isinstance(customer, dict):
        raise TypeError("no 'customer' object")
    tid, key = customer.get("tid"), customer.get("key")
    Customer(tid=tid, key=key)  # validates
    outcome = record.get("outcome")
    if outcome not in _OUTCOMES:
        raise TypeError(f"unknown outcome {outcome!r}")
    tids, identifiers = record.get("tids"), record.get("identifiers")
    if not isinstance(tids, list) or not all(isinstance(t, str) for t in tids):
        raise TypeError("'tids' must be a list of strings")
    if not isinstance(identifiers, list) or not all(
        isinstance(i, dict)
        and isinstance(i.get("apiName"), str)
        and isinstance(i.get("value"), str)
        for i in identifiers
    ):
        raise TypeError("'identifiers' must be a list of {apiName, value}")
    if not isinstance(record.get("attempts"), int) or not isinstance(record.get("time"), str):
        raise TypeError("'attempts' and 'time' are required")
    if datetime.fromisoformat(record["time"]).tzinfo is None:
        raise ValueError("'time' must be in UTC")
    return (tid, key), outcome


def _erasure(record: _Record) -> Erasure:
    """Rebuild what a done line says was deleted."""
    return Erasure(
        tuple(record["tids"]),
        tuple(Identifier(i["apiName"], i["value"]) for i in record["identifiers"]),
        record["outcome"] == ERASED,
    )


def _scan(file: IO[bytes]) -> Iterator[tuple[_Record, _Key, str, int]]:
    """Yield ``(record, key, outcome, end_offset)`` for every valid line of ``file``.

    Stops silently at a torn or invalid *last* line (``end_offset`` of the last yield is where
    the valid part ends); raises :class:`JournalError` for an invalid line followed by more data.
    """
    number = offset = 0
    for line in file:
        number += 1
        offset += len(line)
        if not line.strip():
            continue
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no newline (torn write)")
            record = orjson.loads(line)
            key, outcome = _check(record)
        except (ValueError, TypeError, MXOError) as exc:
            if file.read(1):
                raise JournalError(
                    f"erasure journal line {number} is not a valid record: {exc}", line=number
                ) from None
            return
        yield record, key, outcome, offset


class ErasureJournal:
    """An append-only JSON-lines journal of an erasure sweep (see the module docstring).

    ``await journal.open()`` loads the previous state; :meth:`done` then tells which customers
    are already erased (or were not found); :meth:`record` appends one settled customer.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        self.path = os.fspath(path)
        self._clock = clock or _utc_now
        self._fd: int | None = None
        self._state: dict[_Key, Erasure | None] = {}  # None: the last attempt failed
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._broken: JournalError | None = None
        self.truncated = 0  # bytes of a torn last line dropped on open

    async def open(self) -> None:
        """Load the existing journal (if any), drop a torn tail and open it for appending."""
        if self._fd is not None:
            raise RuntimeError("the erasure journal is already open")
        opening = asyncio.ensure_future(asyncio.to_thread(self._open_sync))
        try:
            self._fd = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread cannot be stopped: close the file it opens, or it would leak.
            opening.add_done_callback(_close_opened)
            raise

    def _open_sync(self) -> int:
        existed = os.path.exists(self.path)
        if existed:
            valid_end = 0
            with open(self.path, "rb") as file:
                for record, key, outcome, end in _scan(file):
                    self._state[key] = None if outcome == FAILED else _erasure(record)
                    valid_end = end
                size = file.seek(0, os.SEEK_END)
            if valid_end < size:
                os.truncate(self.path, valid_end)
                self.truncated = size - valid_end
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        if not existed:
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return fd

    async def aclose(self) -> None:
        """Wait for pending lines to reach the disk, then close the file."""
        writer, self._writer = self._writer, None
        fd, self._fd = self._fd, None
        if writer is not None and not writer.done():
            try:
                await asyncio.shield(writer)
            except asyncio.CancelledError:  # the write goes on in its thread: close after it
                if fd is not None:
                    writer.add_done_callback(lambda _: os.close(fd))
                raise
        if fd is not None:
            os.close(fd)

    async def __aenter__(self) -> ErasureJournal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def done(self, customer: Customer) -> Erasure | None:
        """What a previous run erased for ``customer``, or None if it must be (re)tried."""
        return self._state.get((customer.tid, customer.key))

    @property
    def done_count(self) -> int:
        """Customers the loaded journal records as erased or not found."""
        return sum(1 for state in self._state.values() if state is not None)

    @property
    def failed_count(self) -> int:
        """Customers whose last loaded attempt failed (they are retried)."""
        return sum(1 for state in self._state.values() if state is None)

    def record(self, outcome: Outcome[Customer, Erasure]) -> Awaitable[None]:
        """Append ``outcome``; the returned awaitable settles once the line is fsynced.

        Cancelling the wait does not cancel the write: the whole line still reaches the disk.
        """
        fd = self._fd
        if fd is None:
            raise RuntimeError("the erasure journal is not open")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._broken is not None:
            future.set_exception(self._broken)
            return future
        self._queue.append((encode_line(outcome, self._clock()), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._drain(fd), name="mxo-erasure-journal-writer"
            )
        return future

    async def _drain(self, fd: int) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            error: JournalError | None = self._broken
            if error is None:
                try:
                    data = b"".join(line for line, _ in batch)
                    await asyncio.to_thread(_write_sync, fd, data)
                except OSError as exc:
                    error = self._broken = JournalError(
                        f"could not write the erasure journal: {type(exc).__name__}: {exc}"
                    )
            for _, future in batch:
                if not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)


def _write_sync(fd: int, data: bytes) -> None:
    """Append ``data`` (whole lines) and make it durable before returning."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _close_opened(opening: asyncio.Future[int]) -> None:
    """Close the descriptor of an :meth:`ErasureJournal.open` whose caller was cancelled."""
    if not opening.cancelled() and opening.exception() is None:
        os.close(opening.result())


def _fsync_dir(path: str) -> None:
    """Make a new directory entry durable (best effort: not every platform supports it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ErasureSweep(FanOut[Customer, Erasure]):
    """A fan-out of deletes that journals each customer and skips those already done."""

    def __init__(
        self,
        customers: Iterable[Customer] | AsyncIterable[Customer],
        delete: Callable[[Customer], Awaitable[tuple[Erasure, int]]],
        journal: ErasureJournal,
        *,
        concurrency: int = 16,
        ordered: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        super().__init__(
            customers,
            delete,
            concurrency=concurrency,
            ordered=ordered,
            on_progress=on_progress,
            on_settled=journal.record,
            skip=journal.done,
        )
        self.journal = journal

    async def __aenter__(self) -> ErasureSweep:
        await self.journal.open()
        try:
            await super().__aenter__()
        except BaseException:
            await self.journal.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """Cancel the deletes in flight, then close the journal once its lines are on disk."""
        try:
            await super().aclose()
        finally:
            await self.journal.aclose()


def build_erasure_sweep(
    customers: Iterable[Customer] | AsyncIterable[Customer],
    delete: Callable[[Customer], Awaitable[tuple[Erasure, int]]],
    *,
    concurrency: int = 16,
    journal: str | os.PathLike[str] | None = None,
    ordered: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock | None = None,
) -> FanOut[Customer, Erasure]:
    """A fan-out of ``delete`` over ``customers``, journaled to ``journal`` when given.

    With a journal, customers it records as erased or not found are yielded again (rebuilt from
    the journal, ``attempts=0``, counted as skipped) without a request; failed ones are retried.
    """
    if journal is None:
        return FanOut(customers, delete, concurrency=concurrency, ordered=ordered,
                      on_progress=on_progress)  # fmt: skip
    return ErasureSweep(
        customers,
        delete,
        ErasureJournal(journal, clock=clock),
        concurrency=concurrency,
        ordered=ordered,
        on_progress=on_progress,
    )
