"""Rested inodes a busy file's next versions are written into (see atomic.py).

A file rewritten again while its spare still rests (a busy account) needs
somewhere else to write. A temp file made for it costs an inode created, and
the version it takes out of place an inode freed: journal work that waits on
every other fsync of the filesystem (bench: ~100 µs a write beside ~100 µs for
the rest of it). So the versions a file's exchanges take out of place are kept
instead, under names of their own, `.pool-<n>.<pid>.tmp`, as more spares of that
same file: once one has rested as a spare does (SPARE_REST_S, and its directory
synced since) the file's next version is written over it and exchanged in,
which puts the replaced version in the file's pool in its turn. In the steady
state no inode is created or freed.

An inode only ever holds versions of one file: a reader that opened it under
that name and stalled reads, at worst, another version of the same account,
which whole_reads.read_file then notices. Never another account's.

The pool is bounded: FILE_POOL inodes and FILE_BYTES a file (a version beyond is not kept),
POOL_FILES and POOL_BYTES in all (the oldest kept is let go to make room); what
it does not keep is freed by `atomic.retire`. A crash, or a batch that failed
between staging and installing, leaves names for sweep_temp_files at the next
start; `drop` removes the pool's at a clean stop. Only the thread that installs
files uses it (the projector's own).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass

from . import durable

__all__ = ["InodePool", "open_new"]

# Versions kept per file: a file rewritten up to 64 times within SPARE_REST_S (one client's
# upserts round-robin over 8 accounts: ~45) writes over its own; more are freed.
FILE_POOL = 64
# Kept long enough for a busy account to come back to its own (~10 s of writes at
# 1,500 a second through the pool), small as its documents are.
POOL_FILES = 16384
POOL_BYTES = 256 << 20  # the disk the kept versions may take
FILE_BYTES = POOL_BYTES // 8  # ... and one file's: a hot big account leaves room for others
_PREFIX = ".pool-"


@dataclass(frozen=True, slots=True)
class _Free:
    path: str
    since: float  # time.time() once it was out of place
    size: int  # of the version it holds, as known when it went (for the bounds only)


class InodePool:
    def __init__(self) -> None:
        self._free: dict[str, deque[_Free]] = {}  # by the file they hold versions of
        self._order: dict[str, str] = {}  # every kept inode -> its file, oldest first
        self._bytes = 0
        self._names = 0

    def __len__(self) -> int:
        return len(self._order)

    def take(self, target: str, rest_s: float, tick_s: float) -> tuple[str, int, int]:
        """An inode to write `target`'s next version into, opened for writing, and the
        size it holds: its oldest kept one if it rested, else a new one in its directory.
        OSError if none can be made."""
        queue = self._free.get(target)
        head = os.path.dirname(target)
        if queue and _rested(queue[0], head, rest_s, tick_s):
            oldest = self._pop(target)
            try:
                fd = os.open(oldest.path, os.O_WRONLY)
            except FileNotFoundError:
                pass  # removed under us (by hand: only the sweep at start removes them)
            else:
                try:  # what it holds, not what was recorded: cut short to the byte
                    return oldest.path, fd, os.fstat(fd).st_size
                except OSError:
                    os.close(fd)
                    raise
        self._names += 1
        path = os.path.join(head, f"{_PREFIX}{self._names}.{os.getpid()}.tmp")
        return path, open_new(path), 0

    def give(self, path: str, target: str, size: int) -> list[str]:
        """Keep `path`, which holds a version of `target` of `size` bytes just exchanged
        out of place; the inodes the pool lets go to stay in its bounds, to be freed
        (`path` itself if it cannot be kept)."""
        queue = self._free.get(target) or ()
        if (  # a version too big to keep, or a file that has its share already
            size > POOL_BYTES // 16
            or len(queue) >= FILE_POOL
            or sum(f.size for f in queue) + size > FILE_BYTES
        ):
            return [path]
        let_go = []
        while self._order and (len(self._order) >= POOL_FILES or self._bytes + size > POOL_BYTES):
            let_go.append(self._pop(next(iter(self._order.values()))).path)
        self._free.setdefault(target, deque()).append(_Free(path, time.time(), size))
        self._order[path] = target
        self._bytes += size
        return let_go

    def _pop(self, target: str) -> _Free:
        """`target`'s oldest kept inode, out of the pool."""
        queue = self._free[target]
        free = queue.popleft()
        if not queue:
            del self._free[target]
        del self._order[free.path]
        self._bytes -= free.size
        return free

    def drop(self) -> None:
        """Remove every inode kept (a clean stop)."""
        for path in self._order:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._free.clear()
        self._order.clear()
        self._bytes = 0


def open_new(path: str) -> int:
    """A new, empty inode at `path`, opened for writing; what a failed write or an
    earlier process of the same pid left there is unlinked first."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, 0o644)


def _rested(free: _Free, head: str, rest_s: float, tick_s: float) -> bool:
    """Out of place long enough for any reader, and its exchange made durable."""
    return time.time() - free.since >= rest_s and free.since < durable.synced_at(head) - tick_s
