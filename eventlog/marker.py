"""The partition count a log was made with: recorded once in `log/PARTITIONS`, checked
by every process that opens the log (accounts would move to other partitions); and the
syncs by name that recording it and rolling segments need."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from ._exceptions import PartitionMismatch, SettingsError

__all__ = [
    "check_partitions", "fsync_dir", "recorded_partitions", "same_partitions", "sync_file",
    "try_lock",
]  # fmt: skip


MARKER = "PARTITIONS"  # in the log dir


def check_partitions(log_dir: Path, partitions: int) -> None:
    """Record P the first time; refuse a different P later (accounts would move)."""
    try:
        _record(log_dir, partitions)
    except OSError as e:  # the first use of the data dir: say which setting names it
        raise SettingsError(f"TRADELOG_DATA_DIR: cannot keep the log in {log_dir}: {e}") from e
    same_partitions(log_dir, partitions)


def _record(log_dir: Path, partitions: int) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    marker = log_dir / MARKER
    if not marker.exists():
        # Publish the marker with its content in one step (write a temp file, then link
        # it): processes starting together must never read a created but empty marker.
        tmp = log_dir / f".PARTITIONS.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(f"{partitions}\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, marker)
                fsync_dir(log_dir)
            except FileExistsError:
                pass  # another process recorded it first: check against its count
        finally:
            tmp.unlink(missing_ok=True)


def recorded_partitions(log_dir: Path) -> int | None:
    """P as the log recorded it; None if it has not, or the record cannot be read (the
    writers refuse such a log, and say why: same_partitions)."""
    try:
        return int((log_dir / MARKER).read_text().strip())
    except (OSError, ValueError):
        return None


def same_partitions(log_dir: Path, partitions: int) -> None:
    """PartitionMismatch if the log was made with another P (read-only; a log not made yet
    passes)."""
    marker = log_dir / MARKER
    try:
        text = marker.read_text().strip()
    except FileNotFoundError:
        return
    except OSError as e:
        raise SettingsError(f"TRADELOG_DATA_DIR: cannot read {marker}: {e}") from e
    try:
        held = int(text or 0)
    except ValueError:
        raise PartitionMismatch(f"{marker} should hold a partition count, not {text!r}") from None
    if held != partitions:
        raise PartitionMismatch(
            f"TRADELOG_PARTITIONS is {partitions} but {log_dir} was made with {held}: "
            f"set TRADELOG_PARTITIONS={held} (a data dir keeps its partition count)"
        )


def fsync_dir(path: Path) -> None:
    """fsync a directory by name (OSError on failure)."""
    _by_name(path, os.fsync)


def sync_file(path: Path) -> None:
    """fdatasync a file by name (OSError on failure)."""
    _by_name(path, os.fdatasync)


def _by_name(path: Path, sync: Callable[[int], None]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        sync(fd)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (made if missing), held by the fd returned until it
    is closed (the process's end included; not inherited); None if another process holds
    it. OSError if the file cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
