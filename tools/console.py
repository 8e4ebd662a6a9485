"""rich's Console for what a command prints on stdout."""

from __future__ import annotations

from rich.console import Console

from .cli import stdout_closed

__all__ = ["StdoutConsole"]


class StdoutConsole(Console):
    """A Console on stdout whose closed pipe (`tradelog stats | head`) ends the command
    quietly with 141, as a closed pipe under `print` does (cli.main); rich's own exits 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise SystemExit(stdout_closed())
