"""Reading a file that atomic.py replaces: always one whole version.

A writer replaces a projection file by renaming or exchanging another inode in,
and may later write over an inode a slow reader still holds (a spare, a pool
inode). So what a reader read counts only if the name still holds the inode it
opened and that inode did not change while it was read; else it reads again.
"""

from __future__ import annotations

import os
from pathlib import Path

from eventlog._exceptions import SnapshotUnavailable

from .tags import read_tag

__all__ = ["read_file", "read_tagged"]

_READS = 8  # reads of a file that keeps changing under the reader before giving up


def read_file(path: Path) -> bytes | None:
    """A projection file's bytes; None if it is not there (SnapshotUnavailable if unreadable).

    What was read counts only if the inode did not change meanwhile and its name still
    holds it: else (a spare overwritten under a slow reader, or a pool inode the
    reader opened under this name since given to another file) it is read again.
    """
    read = _read(path, tagged=False)
    return None if read is None else read[0]


def read_tagged(path: Path | str) -> tuple[bytes, bytes | None] | None:
    """`read_file`, with the tag (tags.py) of the inode read: None if it has none."""
    return _read(path, tagged=True)


def _read(path: Path | str, tagged: bool) -> tuple[bytes, bytes | None] | None:
    try:
        for _ in range(_READS):
            with open(path, "rb") as f:
                before = os.fstat(f.fileno())
                data = f.read()
                tag = read_tag(f.fileno()) if tagged else None
            # The name's inode after the read: the one read (same st_ino), unchanged since
            # it was opened. (The size and ctime too: mtime is coarse, and a reused inode
            # may have been written and cut short within one tick of the kernel's clock.)
            now = os.stat(path)
            if (
                now.st_mtime_ns == before.st_mtime_ns
                and (now.st_ino, now.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)
                and now.st_size == len(data)
            ):
                return data, tag
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotUnavailable(f"cannot read {path}: {e}") from e
    raise SnapshotUnavailable(f"cannot read {path}: it kept changing while it was read")
