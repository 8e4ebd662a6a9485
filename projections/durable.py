"""Making projection files and directories durable, and remembering when each
directory was last synced (what was renamed or exchanged in it before then is
durable: atomic.py reuses a spare only after that)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from eventlog._exceptions import SnapshotUnavailable
from eventlog.segments import partition_dir
from eventlog.settings import Settings

from . import fscalls

__all__ = ["covers_log", "fsync_dir", "fsync_file", "make_dirs", "sync_all", "synced_at"]

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


def sync_all(directory: Path, fd: int | None = None) -> None:
    """Flush the filesystem holding `directory` (fscalls.syncfs, `fd` its descriptor if
    the caller keeps one); OSError on failure."""
    started = time.time()
    fscalls.syncfs(directory, fd)
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


def covers_log(settings: Settings) -> bool | None:
    """Whether a sync of the snapshots' filesystem syncs every partition of the log
    (they are on it); None while the log's directory is not made (the projector may
    start first). A partition's directory made later is made in the log's."""
    try:
        here = os.stat(settings.snapshot_dir).st_dev
        if os.stat(settings.log_dir).st_dev != here:
            return False
        for p in range(settings.partitions):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(partition_dir(settings.log_dir, p)).st_dev != here:
                    return False  # (a mount point, or a link to another disk)
    except FileNotFoundError:
        return None
    except OSError:
        return False  # unknown: each partition is synced on its own
    return True
