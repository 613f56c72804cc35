"""The GDPR erasure journal: a durable, resumable, auditable record of an erasure sweep.

One JSON line per settled customer, appended, flushed and fsynced *before* the sweep reports the
outcome, so every outcome a caller ever saw is on disk. Lines are written by one writer at a time
(group commit: lines that settle while a write is in progress go out together in the next
``write`` + ``fsync``), in a worker thread so the event loop never blocks on the disk.

Each line is a JSON object: ``{"customer": {"tid", "key", "identifiers"}, "request", "outcome", "tids", "identifiers", "attempts", "error", "time", "target"}``.
``customer`` is the input (``identifiers`` maps attribute API names to values); ``request`` is the
DELETE body sent to name it (``{"tid": ...}`` or ``{"identifier": {"apiName", "value"}}``; null
when no target was given or no DELETE can name the customer: several identifiers, no TID);
``outcome`` is ``erased``, ``not_found`` or ``failed``; ``tids`` and ``identifiers`` (a list of
``{apiName, value}``) are what MXO said it deletes; ``target`` is the tenant the DELETE went to
(``MXOClient.target``: ``base_url``, ``site_key``, ``customer_key_attribute``, ``api_version``),
null when the sweep was given none. The target is on every line so that each line stands alone as
an audit record and the file stays one line per customer.

A sweep given a target refuses (:class:`JournalError`, naming each field that differs) a journal
that records a customer as done (erased or not found) on another target: resuming would skip that
customer on this tenant, site or key attribute, where nothing was erased. Failed lines of another
target do not bind the journal (those customers are retried anyway), so a sweep first pointed at
a wrong or unreachable host can be resumed at the right one. Lines without a target (journals
written before targets were recorded, whose lines also lack ``request`` and
``customer.identifiers``) are accepted, and the journal is adopted: the lines the sweep appends
carry its target.

The journal is locked (``flock``, exclusive, not waiting) while a sweep has it open: a second
sweep of the same journal, in this process or another, gets a :class:`JournalError` instead of
sending the same deletes again (after a short grace, so a sweep that is just closing it is not
mistaken for a rival). Readers (:func:`~mxo_async.summarize_journal`,
:func:`~mxo_async.export_journal`) take no lock.

On open, the last state of each customer wins; customers are matched by ``(tid, key,
identifiers)``. A torn or invalid *last* line (a crash mid-write) is ignored and truncated away,
so new lines never glue onto a fragment; that customer was never reported and is simply retried.
An invalid line anywhere else raises :class:`JournalError`. What is done is decided from the
journal as loaded, so a customer listed twice in one run is deleted twice (deletes are
idempotent). A failed write makes the journal refuse further lines, and the sweep raises that
error after its calls in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import orjson

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: the journal is then not locked
    fcntl = None  # type: ignore[assignment]

from ._errors import MXOError, ValidationError
from ._fanout import FanOut, Progress
from ._models import Customer, Erasure, Identifier, Outcome
from ._wire import delete_target

if TYPE_CHECKING:
    from ._telemetry import FanOutTelemetry

__all__ = [
    "ErasureJournal",
    "ErasureSweep",
    "JournalError",
    "build_erasure_sweep",
]

ERASED, NOT_FOUND, FAILED = "erased", "not_found", "failed"
_OUTCOMES = (ERASED, NOT_FOUND, FAILED)
TARGET_FIELDS = ("base_url", "site_key", "customer_key_attribute", "api_version")
_Key = tuple[str | None, str | None, frozenset[tuple[str, str]]]
_Record = dict[str, Any]  # one parsed, checked journal line
Clock = Callable[[], datetime]
# How long an open retries a journal locked by someone else: long enough for a sweep of this
# process that is closing it (its last write and fsync), far shorter than any rival sweep.
LOCK_GRACE = 1.0
_LOCK_POLL = 0.01


class _OpenCancelled(Exception):
    """The open of a journal was cancelled while its thread waited: it gives up."""


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


def customer_key(customer: Customer) -> _Key:
    """How the journal matches a customer across runs: ``(tid, key, identifiers)``."""
    return customer.tid, customer.key, frozenset(customer.identifiers.items())


def encode_line(
    outcome: Outcome[Customer, Erasure],
    moment: datetime,
    target: Mapping[str, str] | None = None,
) -> bytes:
    """The journal line (with its newline) recording one settled customer.

    ``target``'s key attribute says how the DELETE named the customer; without a target the
    line's ``request`` is null.
    """
    customer = outcome.item
    erasure, error = outcome.result, outcome.error
    if error is not None or erasure is None:
        state, tids, identifiers = FAILED, [], []
    else:
        state = ERASED if erasure.found else NOT_FOUND
        tids = list(erasure.tids)
        identifiers = [{"apiName": i.api_name, "value": i.value} for i in erasure.identifiers]
    request: dict[str, object] | None = None
    key_attribute = None if target is None else target.get("customer_key_attribute")
    if key_attribute is not None:
        # A customer no DELETE can name (several identifiers, no TID) failed before any request.
        with contextlib.suppress(ValidationError):
            request = delete_target(customer, key_attribute)
    record = {
        "customer": {
            "tid": customer.tid,
            "key": customer.key,
            "identifiers": dict(customer.identifiers),
        },
        "request": request,
        "outcome": state,
        "tids": tids,
        "identifiers": identifiers,
        "attempts": outcome.attempts,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "time": format_time(moment),
        "target": target,
    }
    return orjson.dumps(record) + b"\n"


def target_differences(journal: Mapping[str, object], target: Mapping[str, str]) -> list[str]:
    """What differs between a journal's target and a sweep's, as readable phrases."""
    differences = []
    for field in sorted(set(journal) | set(target), key=_field_order):
        recorded, current = journal.get(field), target.get(field)
        if field == "base_url" and isinstance(recorded, str) and isinstance(current, str):
            recorded, current = recorded.rstrip("/"), current.rstrip("/")
        if recorded != current:
            differences.append(f"{field} is {recorded!r} in the journal, {current!r} here")
    return differences


def _field_order(field: str) -> tuple[int, str]:
    return (TARGET_FIELDS.index(field) if field in TARGET_FIELDS else len(TARGET_FIELDS), field)


class _Entry(NamedTuple):
    """One valid journal line."""

    record: _Record
    key: _Key  # the customer's
    outcome: str
    end: int  # offset just past the line


def _check_target(target: object) -> None:
    """``target`` is null (or absent) or an object of strings."""
    if target is not None and (
        not isinstance(target, dict)
        or not all(isinstance(n, str) and isinstance(v, str) for n, v in target.items())
    ):
        raise TypeError("'target' must be null or an object of strings")


def _check_request(request: object) -> None:
    """``request`` is null (or absent), ``{"tid": str}`` or ``{"identifier": {apiName, value}}``."""
    if request is None:
        return
    if isinstance(request, dict) and len(request) == 1:
        tid, identifier = request.get("tid"), request.get("identifier")
        if isinstance(tid, str) or (
            isinstance(identifier, dict)
            and isinstance(identifier.get("apiName"), str)
            and isinstance(identifier.get("value"), str)
        ):
            return
    raise TypeError("'request' must be null, {tid} or {identifier: {apiName, value}}")


def _check(record: object) -> tuple[_Key, str]:
    """Validate one parsed line; return the customer's key and its outcome."""
    if not isinstance(record, dict):
        raise TypeError("not a JSON object")
    customer = record.get("customer")
    if not isinstance(customer, dict):
        raise TypeError("no 'customer' object")
    checked = Customer(  # validates
        tid=customer.get("tid"),
        key=customer.get("key"),
        identifiers=customer.get("identifiers") or {},  # absent from lines of older journals
    )
    _check_request(record.get("request"))
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
    _check_target(record.get("target"))
    return customer_key(checked), outcome


def _erasure(record: _Record) -> Erasure:
    """Rebuild what a done line says was deleted."""
    return Erasure(
        tuple(record["tids"]),
        tuple(Identifier(i["apiName"], i["value"]) for i in record["identifiers"]),
        record["outcome"] == ERASED,
    )


def _scan(file: IO[bytes]) -> Iterator[_Entry]:
    """Yield every valid line of ``file``.

    Stops silently at a torn or invalid *last* line (the ``end`` of the last entry is where the
    valid part ends); raises :class:`JournalError` for an invalid line followed by more data.
    """
    name = getattr(file, "name", None)
    where = f"erasure journal {name}" if isinstance(name, str) else "erasure journal"
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
                    f"{where}: line {number} is not a valid record: {exc}", line=number
                ) from None
            return
        yield _Entry(record, key, outcome, offset)


class ErasureJournal:
    """An append-only JSON-lines journal of an erasure sweep (see the module docstring).

    ``await journal.open()`` loads the previous state (and refuses a journal that records
    customers as done on another ``target``); :meth:`done` then tells which customers are
    already erased (or were not found); :meth:`record` appends one settled customer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        target: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.target = None if target is None else dict(target)
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
        cancelled = threading.Event()
        opening = asyncio.ensure_future(asyncio.to_thread(self._open_sync, cancelled))
        try:
            self._fd = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread cannot be stopped: it gives up waiting for the lock, and the file it
            # opened is closed, or it would leak.
            cancelled.set()
            opening.add_done_callback(_close_opened)
            raise

    def _open_sync(self, cancelled: threading.Event) -> int:
        """Open and lock the journal, then load it (in a worker thread)."""
        if cancelled.is_set():
            raise _OpenCancelled
        existed = os.path.exists(self.path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            self._lock(fd, cancelled)
            if existed:
                self._load(fd)
        except BaseException:
            os.close(fd)
            raise
        if not existed:
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return fd

    def _lock(self, fd: int, cancelled: threading.Event) -> None:
        """Take the journal's exclusive lock, or raise :class:`JournalError` once the grace ends
        (and stop waiting as soon as the open is cancelled)."""
        if fcntl is None:  # pragma: no cover - Windows
            return
        give_up = time.monotonic() + LOCK_GRACE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if cancelled.wait(_LOCK_POLL):
                    raise _OpenCancelled from None
                if time.monotonic() >= give_up:
                    raise JournalError(
                        f"erasure journal {self.path} is in use by another sweep (it is locked); "
                        "wait for that sweep to end: two sweeps of one journal would send the "
                        "same deletes twice"
                    ) from None

    def _load(self, fd: int) -> None:
        """Load the customers' last states; cut a torn last line away."""
        valid_end = 0
        accepted: object = None  # the last target found equal to ours
        with open(self.path, "rb") as file:
            for entry in _scan(file):
                valid_end = entry.end
                if entry.outcome == FAILED:
                    self._state[entry.key] = None
                    continue
                recorded = entry.record.get("target")
                if recorded is not None and recorded != accepted:
                    self._check_target(recorded)
                    accepted = recorded
                self._state[entry.key] = _erasure(entry.record)
            size = file.seek(0, os.SEEK_END)
        if valid_end < size:
            os.ftruncate(fd, valid_end)
            self.truncated = size - valid_end

    def _check_target(self, recorded: Mapping[str, object]) -> None:
        if self.target is None:
            return
        differences = target_differences(recorded, self.target)
        if differences:
            raise JournalError(
                f"erasure journal {self.path} records customers as done on another target: "
                + "; ".join(differences)
                + "; use a new journal for this target"
            )

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
        return self._state.get(customer_key(customer))

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
        self._queue.append((encode_line(outcome, self._clock(), self.target), future))
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
                        f"could not write the erasure journal {self.path}: "
                        f"{type(exc).__name__}: {exc}"
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
        telemetry: FanOutTelemetry | None = None,
    ) -> None:
        super().__init__(
            customers,
            delete,
            concurrency=concurrency,
            ordered=ordered,
            on_progress=on_progress,
            on_settled=journal.record if telemetry is None else telemetry.journaled(journal.record),
            skip=journal.done,
            telemetry=telemetry,
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
    target: Mapping[str, str] | None = None,
    ordered: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock | None = None,
    telemetry: FanOutTelemetry | None = None,
) -> FanOut[Customer, Erasure]:
    """A fan-out of ``delete`` over ``customers``, journaled to ``journal`` when given.

    With a journal, customers it records as erased or not found are yielded again (rebuilt from
    the journal, ``attempts=0``, counted as skipped) without a request; failed ones are retried.
    ``target`` (``MXOClient.target``) is recorded on each journal line; entering the sweep raises
    :class:`JournalError` if the journal records a customer as done on another target.
    """
    if journal is None:
        return FanOut(customers, delete, concurrency=concurrency, ordered=ordered,
                      on_progress=on_progress, telemetry=telemetry)  # fmt: skip
    return ErasureSweep(
        customers,
        delete,
        ErasureJournal(journal, target=target, clock=clock),
        concurrency=concurrency,
        ordered=ordered,
        on_progress=on_progress,
        telemetry=telemetry,
    )
