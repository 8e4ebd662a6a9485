"""Rested inodes that any file's next version may be written into (see atomic.py).

A file rewritten again while its spare still rests (a busy account) needs
somewhere else to write. A temp file made for it costs an inode created, and
the version it takes out of place an inode freed: journal work that waits on
every other fsync of the filesystem (bench: ~100 µs a write beside ~100 µs for
the rest of it). So the versions exchanged out of place are kept instead, in
this pool, under names of their own, `.pool-<n>.<pid>.tmp`, and once one has
rested as a spare does (SPARE_REST_S, and its directory synced since) it is
overwritten with the next version of any file of that directory and exchanged
with it, which puts the replaced version in the pool in its turn. In the steady
state no inode is created or freed.

The pool is bounded: at most POOL_FILES inodes, and only versions under
POOL_FILE_BYTES (judged by the size of the new version of the same file) are
kept; others are freed as before. A crash leaves the names for
sweep_temp_files; `drop` removes them at a clean stop. Only the thread that
installs files uses it (the projector's own).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass

from . import durable

__all__ = ["POOL_FILES", "POOL_FILE_BYTES", "InodePool", "is_pooled"]

POOL_FILES = 4096  # a second or two of a busy projector's writes
POOL_FILE_BYTES = 64 << 10  # bigger versions are freed: at most 256 MiB kept on disk
_PREFIX = ".pool-"
_BLOCK = 4096  # the filesystem's allocation unit (ext4's and most others' default)


def is_pooled(path: str) -> bool:
    return os.path.basename(path).startswith(_PREFIX)


@dataclass(frozen=True, slots=True)
class _Free:
    path: str
    since: float  # time.time() once it was out of place
    size: int  # of the version it holds


def _blocks(size: int) -> int:
    return max(1, -(-size // _BLOCK))


class InodePool:
    """Kept by directory and by how many blocks the version each holds takes: cutting
    a file to a shorter length costs little within its last block, and as much as
    freeing it when blocks go (~70 µs), so a version is written over one of its size."""

    def __init__(self) -> None:
        self._free: dict[tuple[str, int], deque[_Free]] = {}  # oldest first
        self._count = 0
        self._names = 0

    def __len__(self) -> int:
        return self._count

    def admits(self, size: int) -> bool:
        """Whether a version about `size` bytes is worth keeping."""
        return size <= POOL_FILE_BYTES

    def take(self, head: str, size: int, rest_s: float, tick_s: float) -> tuple[str, int, int]:
        """An inode of `head` to write `size` bytes into, opened for writing, and the size
        it holds: a rested one of as many blocks (or one fewer: it grows) if any; else,
        the pool full, its oldest rested one of any size (so that it turns over); else a
        new one. OSError if none can be made."""
        blocks = _blocks(size)
        keys = [(head, blocks), (head, blocks - 1)]
        if self._count >= POOL_FILES:
            keys += sorted((k for k in self._free if k[0] == head), key=self._since)
        for key in keys:
            queue = self._free.get(key)
            if not queue or not self._rested(queue[0], head, rest_s, tick_s):
                continue
            oldest = queue.popleft()
            self._count -= 1
            try:
                fd = os.open(oldest.path, os.O_WRONLY)
            except FileNotFoundError:
                break  # swept or moved away under us (a replay's switch): a new one
            try:  # what it holds, not what was recorded: cut short to the byte
                return oldest.path, fd, os.fstat(fd).st_size
            except OSError:
                os.close(fd)
                raise
        self._names += 1
        path = os.path.join(head, f"{_PREFIX}{self._names}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            return path, os.open(path, flags, 0o644), 0
        except FileExistsError:  # left by an earlier process of the same pid
            os.unlink(path)
            return path, os.open(path, flags, 0o644), 0

    def _since(self, key: tuple[str, int]) -> float:
        queue = self._free[key]
        return queue[0].since if queue else float("inf")

    @staticmethod
    def _rested(free: _Free, head: str, rest_s: float, tick_s: float) -> bool:
        """Out of place long enough for any reader, and its exchange made durable."""
        return time.time() - free.since >= rest_s and free.since < durable.synced_at(head) - tick_s

    def give(self, path: str, size: int) -> bool:
        """Keep `path`, which holds a version of `size` bytes just exchanged out of place;
        False if the pool is full."""
        if self._count >= POOL_FILES or not self.admits(size):
            return False
        key = (os.path.dirname(path), _blocks(size))
        self._free.setdefault(key, deque()).append(_Free(path, time.time(), size))
        self._count += 1
        return True

    def drop(self) -> None:
        """Remove every inode kept (a clean stop)."""
        for queue in self._free.values():
            for free in queue:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(free.path)
        self._free.clear()
        self._count = 0
