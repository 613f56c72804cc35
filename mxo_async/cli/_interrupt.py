"""Ctrl-C and SIGTERM during a long command: stop reading, let the requests in flight settle.

The first SIGINT or SIGTERM stops the intake: no more input is read (a read waiting on a pipe is
abandoned), the requests in flight run to their end and are reported as usual, and the command
prints its summary with the first input line it did not send. A second signal aborts at once:
the command's task is cancelled, so the requests in flight are cancelled too, and the command
reports each of them as unsettled (it may or may not have reached MXO). A fatal error (see
:class:`~mxo_async.cli._status.FailureWatch`) stops the intake the same way, without a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from rich.console import Console

from mxo_async import MXOError

from ._status import ExitCode

__all__ = ["InputStopped", "Interruption", "NotSent"]

Reader = Callable[[], Awaitable[bytes]]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_EXIT_CODES = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}


class InputStopped(Exception):
    """Raised by a read of :meth:`Interruption.reader` once the intake has stopped."""


class NotSent(MXOError):
    """An item accepted before the command was aborted, and never sent (certainly not stored)."""


class Interruption:
    """Watches SIGINT and SIGTERM while a command's coroutine runs (``with`` inside it).

    ``stopping`` turns True at the first signal or at :meth:`stop`; ``aborted`` at the second
    signal, which also cancels the task that entered the block. Outside the main thread (where
    signal handlers cannot be installed) the signals keep their usual effect.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self.signal: signal.Signals | None = None
        self.aborted = False
        self._stopped: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._installed: list[tuple[signal.Signals, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop_rows(
        self, stopped: str | None, handled: int, unsettled: str | None, to_continue: str
    ) -> list[tuple[str, str]]:
        """Summary rows saying where an interrupted or aborted run stopped and how to continue
        it; none for a run that went to the end. ``unsettled`` describes what was left open."""
        if self.signal is None and stopped is None:
            return []
        why = self.signal.name if self.signal is not None else "aborted"
        text = f"{why}: no line after line {handled:,} was sent"
        if unsettled:
            text += f"; {unsettled}"
        return [("stopped", text), ("to continue", to_continue)]

    def __enter__(self) -> Interruption:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._stopped = asyncio.Event()
        for number in _SIGNALS:
            previous = signal.getsignal(number)
            try:
                self._loop.add_signal_handler(number, self._on_signal, number)
            except (RuntimeError, ValueError, NotImplementedError):
                continue  # not the main thread, or no signal support in this loop
            self._installed.append((number, previous))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, self._loop = self._loop, None
        installed, self._installed = self._installed, []
        for number, previous in installed:
            if loop is not None:
                loop.remove_signal_handler(number)
            if previous is not None:
                signal.signal(number, previous)

    @property
    def stopping(self) -> bool:
        """True once the intake must stop (a signal, or :meth:`stop`)."""
        return self._stopped is not None and self._stopped.is_set()

    @property
    def exit_code(self) -> ExitCode | None:
        """130 after SIGINT, 143 after SIGTERM, None without a signal."""
        return None if self.signal is None else _EXIT_CODES[self.signal]

    def stop(self) -> None:
        """Stop the intake without a signal (the run cannot go on)."""
        if self._stopped is not None:
            self._stopped.set()

    def uncancel(self) -> None:
        """Take back the cancellation of an abort once it has been handled."""
        if self._task is not None:
            self._task.uncancel()

    def _on_signal(self, number: signal.Signals) -> None:
        name = signal.Signals(number).name
        if self.signal is None:
            self.signal = signal.Signals(number)
            self.stop()
            self._say(
                f"{name}: no more input is read; waiting for the requests in flight "
                "(send it again to abort them at once)"
            )
        elif not self.aborted:
            self.aborted = True
            self._say(f"{name} again: aborting; the requests in flight are reported as unsettled")
            if self._task is not None:
                self._task.cancel()

    def _say(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def reader(self, read: Reader) -> Reader:
        """``read`` that raises :class:`InputStopped` once the intake stops, even mid-wait."""

        async def stoppable() -> bytes:
            stopped = self._stopped
            if stopped is None:
                return await read()
            if stopped.is_set():
                raise InputStopped
            reading = asyncio.ensure_future(read())
            waiting = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait((reading, waiting), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                if not reading.done():
                    reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
            if reading.cancelled() or not reading.done():
                raise InputStopped
            return reading.result()

        return stoppable
