"""Cutting off torn last lines when a writer starts.

A crash mid-write leaves part of a line after the last newline of a
partition's last segment; it was never acknowledged. Readers skip it and the
writer cuts it off under the lock before its next append, but until then the
log holds bytes that are not an event (a backup, `tail -c` or another tool sees
them). So `serve` (and with it `up`) cuts every such tail at start, each under
its partition's lock: while the lock is held nobody is mid-write, so bytes
after the last newline are a crash's leftover, never an append in progress. A
partition whose lock another process holds is skipped, not waited for: its
writer is alive and cuts a torn tail under the lock before it appends.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from ._exceptions import LogUnavailable
from .filelog import LOCK_NAME
from .segments import partition_dir, segment_bases, segment_path
from .settings import Settings
from .tail_scan import last_line

__all__ = ["cut_torn_tails"]

log = logging.getLogger("tradelog.log")


def cut_torn_tails(settings: Settings) -> dict[Path, int]:
    """Cut the torn tail of every partition's last segment; answer what was cut where."""
    cut: dict[Path, int] = {}
    for p in range(settings.partitions):
        pdir = partition_dir(settings.log_dir, p)
        if not pdir.is_dir():
            continue
        try:
            lock_fd = os.open(pdir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LogUnavailable(f"cannot open the lock of {pdir}: {e}") from e
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # A live writer holds it: it cuts a torn tail itself, under the lock,
                # before its next append. Waiting could hold start-up for as long as
                # that writer takes (a hung one: for ever).
                log.info("partition %d is being written: its writer cuts any torn tail", p)
                continue
            torn = _cut(pdir)
        except OSError as e:
            raise LogUnavailable(f"cannot cut the torn tail of {pdir}: {e}") from e
        finally:
            os.close(lock_fd)  # lets the lock go too
        if torn is not None:
            cut[torn[0]] = torn[1]
    return cut


def _cut(pdir: Path) -> tuple[Path, int] | None:
    bases = segment_bases(pdir)
    if not bases:
        return None
    path = segment_path(pdir, bases[-1])
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        found = last_line(f, end)
        keep = 0 if found is None else found[0] + 1  # up to and with the last newline
        if keep == end:
            return None
        log.warning("cutting off a torn last line (%d bytes) of %s", end - keep, path)
        f.truncate(keep)
        os.fsync(f.fileno())
    return path, end - keep
