"""rich's Console for what a command prints on stdout, and progress on stderr."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID

from .cli import stdout_closed

__all__ = ["Bar", "StdoutConsole", "progress_bar"]

PLAIN_EVERY_S = 10.0  # how often progress is said where no bar can be drawn


class StdoutConsole(Console):
    """A Console on stdout whose closed pipe (`tradelog stats | head`) ends the command
    quietly with 141, as a closed pipe under `print` does (cli.main); rich's own exits 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise SystemExit(stdout_closed())


class Bar(Protocol):
    """What long work reports its progress to."""

    def add_task(self, description: str, *, total: float | None = None) -> TaskID: ...

    def advance(self, task_id: TaskID, advance: float = 1) -> None: ...


class PlainProgress:
    """Progress as a line on stderr every PLAIN_EVERY_S and at the end, where rich's
    bar would draw nothing (stderr not a terminal: a service's journal, a file)."""

    def __init__(self) -> None:
        self._tasks: list[tuple[str, float | None]] = []
        self._done: list[float] = []
        self._started = time.monotonic()
        self._said = self._started

    def add_task(self, description: str, *, total: float | None = None) -> TaskID:
        self._tasks.append((description, total))
        self._done.append(0)
        return TaskID(len(self._tasks) - 1)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self._done[task_id] += advance
        now = time.monotonic()
        if now - self._said >= PLAIN_EVERY_S:
            self._said = now
            self._say(task_id)

    def _say(self, task_id: TaskID) -> None:
        description, total = self._tasks[task_id]
        done = self._done[task_id]
        took = time.monotonic() - self._started
        of = f" of {total:,.0f} ({100 * done / total:.0f}%)" if total else ""
        rate = f", {done / took:,.0f}/s" if took > 0 else ""
        print(f"{description}: {done:,.0f}{of}{rate}", file=sys.stderr, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            for task_id in range(len(self._tasks)):
                self._say(TaskID(task_id))


def progress_bar(*columns: ProgressColumn) -> Progress | PlainProgress:
    """rich's bar on stderr (gone when done) on a terminal; plain lines elsewhere."""
    console = Console(stderr=True)
    # (rich takes FORCE_COLOR for a terminal: a service's journal still gets lines)
    if console.is_terminal and sys.stderr.isatty():
        return Progress(*columns, console=console, transient=True)
    return PlainProgress()
