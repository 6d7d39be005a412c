"""Progress of the long package commands (``package build``, ``models push``).

A :class:`Progress` is told each step (``step(label, total)``, ``total`` in bytes, or
None when the step cannot count) and the bytes done in it (``advance(n)``). The base
class shows nothing: the Python API and ``--json`` get it. :func:`progress_for` gives a
``rich`` bar on standard error when that is a terminal and ``--json`` was not asked
for; a pipe, a log file or a script reading JSON never sees one.
"""

from __future__ import annotations

import sys
from typing import IO, Any


class Progress:
    """Steps and byte counts of one command; this base class shows nothing."""

    def step(self, label: str, total: int | None = None) -> None:
        """A new step begins (the previous one is done); ``total`` bytes, if known."""

    def advance(self, n: int) -> None:
        """``n`` more bytes of the current step are done."""

    def close(self) -> None:
        """The command ended (the current step is done)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the shared do-nothing instance
SILENT = Progress()


class TerminalProgress(Progress):
    """One ``rich`` line per step on ``stream``: bar, percentage, bytes and rate (steps
    that count bytes), time taken."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bars
        from rich.text import Text

        class Counted(ProgressColumn):
            """``inner``'s rendering for a step that counts bytes, else nothing."""

            def __init__(self, inner: ProgressColumn) -> None:
                super().__init__()
                self.inner = inner

            def render(self, task: Any) -> Any:
                return self.inner.render(task) if task.fields.get("counted") else Text("")

        self._bars = Bars(TextColumn("{task.description:<16}"), BarColumn(),
                          TaskProgressColumn(), Counted(DownloadColumn()),
                          Counted(TransferSpeedColumn()), TimeElapsedColumn(),
                          console=Console(file=stream), transient=False)
        self._bars.start()
        self._task: Any = None

    def _finish(self) -> None:
        if self._task is not None:
            total = self._bars.tasks[-1].total
            self._bars.update(self._task, total=total or 1, completed=total or 1)
            self._bars.stop_task(self._task)
            self._task = None

    def step(self, label: str, total: int | None = None) -> None:
        self._finish()
        self._task = self._bars.add_task(label, total=total, counted=total is not None)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, n)

    def close(self) -> None:
        self._finish()
        self._bars.stop()


def progress_for(as_json: bool, stream: IO[str] | None = None) -> Progress:
    """A terminal progress bar on ``stream`` (standard error) when it is a TTY and JSON
    output was not asked for; else :data:`SILENT`."""
    stream = stream or sys.stderr
    if as_json or not stream.isatty():
        return SILENT
    return TerminalProgress(stream)
