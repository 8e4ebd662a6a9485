"""Making projection files and directories durable, and remembering when each
directory was last synced (what was renamed or exchanged in it before then is
durable: atomic.py reuses a spare only after that)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from eventlog._exceptions import SnapshotUnavailable

from . import fscalls

__all__ = ["fsync_dir", "fsync_file", "make_dirs", "sync_all", "synced_at"]

# Directory -> the time.time() just before its last sync began.
_synced: dict[str, float] = {}


def synced_at(directory: str) -> float:
    """When the last sync of `directory` began (time.time()); 0.0 if never."""
    return _synced.get(directory, 0.0)


def fsync_dir(path: Path) -> None:
    started = time.time()
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY, "directory ")
    _synced[os.fspath(path)] = started


def fsync_file(path: str) -> None:
    _fsync(path, os.O_RDONLY, "")


def _fsync(path: Path | str, flags: int, what: str) -> None:
    try:
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise SnapshotUnavailable(f"cannot fsync {what}{path}: {e}") from e


def sync_all(directory: Path) -> None:
    """Flush the filesystem holding `directory` (fscalls.syncfs); OSError on failure."""
    started = time.time()
    fscalls.syncfs(directory)
    _synced[os.fspath(directory)] = started


def make_dirs(path: Path, *, sync: bool = True) -> None:
    """Create `path` (and parents) if missing, its new entry durable in its parent."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SnapshotUnavailable(f"cannot create {path}: {e}") from e
    if sync:
        fsync_dir(path.parent)
