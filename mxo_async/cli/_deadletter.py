"""The dead-letter file: one JSON line per input line that was not delivered, with the reason."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import TracebackType
from typing import IO

import orjson

from ._lines import Line
from ._status import Aborted

__all__ = ["DeadLetter", "default_dead_letter_path"]


def default_dead_letter_path(source: str) -> str:
    """``<FILE>.dead-letter.ndjson`` next to the input, or in the current directory for stdin."""
    if source == "-":
        return "mxo-async-dead-letter.ndjson"
    return source + ".dead-letter.ndjson"


class DeadLetter:
    """Appends ``{"line", "reason", "error", "input", "time"}`` records to ``path``.

    ``reason`` is ``invalid`` (the line could not be parsed), ``failed`` (certainly not applied),
    ``ambiguous`` (may have been applied) or ``rejected`` (MXO answered but did not process one
    activity of the line). A ``rejected`` record is written per rejected activity and also holds
    ``code`` (MXO's ``errorCode``) and ``activity`` (the activity's index in the line, 0 for a
    one-activity line); ``error`` is MXO's message, and the line's other activities were stored.
    ``input`` is the original line, so a retry file is ``jq -r .input DEAD_LETTER`` (filter out
    ``rejected`` records first: their line's other activities are already stored). The file is
    created (mode 0600: it holds customer keys) only when the first record is written, and each
    record is flushed as it is written.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
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
            self._write(line, reason, error, code, activity)
        except OSError as exc:
            raise Aborted(
                f"cannot write the dead-letter file {self.path}: {exc.strerror}"
            ) from None

    def _write(
        self, line: Line, reason: str, error: str, code: str | None, activity: int | None
    ) -> None:
        if self._file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "ab")
        record: dict[str, object] = {"line": line.number, "reason": reason}
        if code is not None:
            record["code"] = code
        if activity is not None:
            record["activity"] = activity
        record["error"] = error
        record["input"] = line.text
        record["time"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()
        self.count += 1

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
