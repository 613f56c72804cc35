"""The dead-letter file: one JSON line per input line that was not delivered, with the reason."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import TracebackType
from typing import IO

import click
import orjson

from ._lines import Line
from ._status import Aborted

__all__ = ["STDIN_DEAD_LETTER", "DeadLetter", "check_writable", "default_dead_letter_path"]

STDIN_DEAD_LETTER = "mxo-async-dead-letter.ndjson"


def default_dead_letter_path(source: str) -> str:
    """``<FILE>.dead-letter.ndjson`` next to the input, or ``mxo-async-dead-letter.ndjson`` in
    the current directory for stdin."""
    if source == "-":
        return STDIN_DEAD_LETTER
    return source + ".dead-letter.ndjson"


def check_writable(path: str, option: str) -> None:
    """Fail with a usage error (before any request) unless ``path`` can be created or appended
    to; the check leaves no new file behind."""
    try:
        if os.path.lexists(path):
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)))
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(path)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {path}: {exc.strerror or exc}", param_hint=option
        ) from None


class DeadLetter:
    """Appends ``{"line", "reason", "error", "input", "time"}`` records to ``path``.

    ``reason`` is ``invalid`` (the line could not be parsed), ``failed`` (certainly not stored),
    ``ambiguous`` (may have been stored: the request failed after it may have been applied, or
    was still in flight when the command was aborted), ``unconfirmed`` (stored: MXO answered
    200 but the answer could not be read) or ``rejected`` (MXO answered but did not process
    one activity of the line). A ``rejected`` record is written per rejected activity and also
    holds ``code`` (MXO's ``errorCode``) and ``activity`` (the activity's index in the line, 0
    for a one-activity line); ``error`` is MXO's message, and the line's other activities were
    stored.

    ``input`` is the original line, so ``jq -r .input DEAD_LETTER`` rebuilds a file the command
    reads again. For CSV input, each run's first record is a ``header`` record whose ``input``
    is the CSV header line (``send`` and ``erase`` skip a row equal to their header, so the
    headers of several runs do no harm). The file is appended to across runs; it is created
    (mode 0600: it holds customer keys) only when the first record is written (the command
    checks beforehand that it can be: :func:`check_writable`), and each record is flushed as it
    is written.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.header: Line | None = None
        self._header_written = False
        self._file: IO[bytes] | None = None

    def write(
        self,
        line: Line,
        reason: str,
        error: str,
        *,
        code: str | None = None,
        activity: int | None = None,
    ) -> None:
        """Append one record (``code`` and ``activity`` only when given) and flush it.

        Raises:
            Aborted: the file cannot be written (nothing may be dropped silently).
        """
        try:
            if self._file is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                self._file = os.fdopen(os.open(self.path, flags, 0o600), "ab")
            if self.header is not None and not self._header_written:
                self._header_written = True
                self._append(self._record(self.header, "header", None, None, None))
            self._append(self._record(line, reason, error, code, activity))
        except OSError as exc:
            raise Aborted(
                f"cannot write the dead-letter file {self.path}: {exc.strerror or exc}"
            ) from None
        self.count += 1

    @staticmethod
    def _record(
        line: Line, reason: str, error: str | None, code: str | None, activity: int | None
    ) -> dict[str, object]:
        record: dict[str, object] = {"line": line.number, "reason": reason}
        if code is not None:
            record["code"] = code
        if activity is not None:
            record["activity"] = activity
        record["error"] = error
        record["input"] = line.text
        record["time"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return record

    def _append(self, record: dict[str, object]) -> None:
        assert self._file is not None
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file (if it was ever opened)."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __enter__(self) -> DeadLetter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
