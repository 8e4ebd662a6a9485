"""rich's Console for what a command prints on stdout."""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["StdoutConsole"]


class StdoutConsole(Console):
    """A Console on stdout whose closed pipe (`tradelog stats | head`) ends the command
    quietly with 141, as a closed pipe under `print` does (cli.main); rich's own exits 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141)
