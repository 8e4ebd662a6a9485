"""The JSON-lines log as a writer holds it: one partition, locked across processes.

Appends to a partition are serialised by a blocking `flock` on `p<NN>/.lock`
(taken once per batch: the `filelock` package polls and costs ~150 us a try,
which group commit would pay per batch for nothing). Under the lock the writer
first reads what other processes appended, cuts off a torn tail, then writes
its whole batch with one write and one fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._exceptions import LogUnavailable
from .marker import fsync_dir, sync_file
from .records import StoredEvent
from .segments import Cursor, Position, partition_dir, segment_path

__all__ = ["LOCK_NAME", "LOCK_RETRY_S", "PartitionFile", "wait_for_writers"]

log = logging.getLogger("tradelog.log")

LOCK_NAME = ".lock"  # in each partition's directory: its writers' flock
LOCK_RETRY_S = (0.0005, 0.002)  # the first and the longest wait before a busy lock is tried again


class PartitionFile:
    """The writing end of one partition: lock, catch up, append, sync."""

    def __init__(self, log_dir: Path, partition: int, segment_bytes: int) -> None:
        self.partition = partition
        self.dir = partition_dir(log_dir, partition)
        self.segment_bytes = segment_bytes
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LogUnavailable(f"cannot open partition {self.dir}: {e}") from e
        self._cursor = Cursor(self.dir, partition)
        self._wfd: int | None = None
        self._wbase = -1
        self.last_write: tuple[Path, int] | None = None  # the segment and where it began

    @property
    def next_offset(self) -> int:
        return self._cursor.next_offset

    def position(self) -> Position:
        return self._cursor.at()

    def restore(self, at: Position) -> None:
        """Start reading at `at` (a saved command side holds what lies before)."""
        self._cursor.restore(at)

    def close(self) -> None:
        """Close its files (the lock with them); never raises, may be called again."""
        with contextlib.suppress(OSError):
            self._cursor.close()
        if self._wfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._wfd)
            self._wfd = None
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    def lock(self, wait: bool = True) -> bool:
        """Take the partition lock; without `wait`, False if another holds it."""
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as e:
            raise LogUnavailable(f"cannot lock {self.dir}: {e}") from e
        return True

    def unlock(self) -> None:
        """Let the lock go; nothing to do once closed (closing let it go)."""
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.lock()
        try:
            yield
        finally:
            self.unlock()

    def reset(self) -> None:
        """Read from the start again (`restore` may move on); the lock, if held, stays held."""
        self._cursor.close()
        self._cursor = Cursor(self.dir, self.partition)

    def read_ahead(self) -> list[StoredEvent]:
        """Read the complete lines appended since we last looked, without the lock: a
        partial last line (a write in progress, or a crash's) is left to catch_up."""
        events, _ = self._cursor.read()
        return events

    def catch_up(self) -> list[StoredEvent]:
        """Read what was appended since we last looked; cut off a torn tail. Hold the lock."""
        events, torn = self._cursor.read()
        if torn:
            # Under the lock nobody is mid-write, so a partial last line is a crash's leftover.
            log.warning("cutting off a torn last line (%d bytes) of %s", torn, self._cursor.path)
            try:
                os.truncate(self._cursor.path, self._cursor.pos)
            except OSError as e:
                raise LogUnavailable(f"cannot repair {self._cursor.path}: {e}") from e
        return events

    def _writer_fd(self, incoming: int) -> int:
        cur = self._cursor
        if cur.pos and cur.pos + incoming > self.segment_bytes:
            # The segment left behind is synced first: with fsync=batch its last lines
            # (this process's or another's) wait for syncs that go to the new one only.
            sync_file(cur.path)
            # Roll: the new segment is named by the first offset it will hold.
            path = segment_path(self.dir, cur.next_offset)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.close(fd)
            fsync_dir(self.dir)
            cur.read()  # moves the cursor onto the new, empty segment
        if self._wfd is None or self._wbase != cur.base:
            if self._wfd is not None:
                # Its segment was synced by name when whoever rolled past it did so.
                os.close(self._wfd)
            self._wfd = os.open(cur.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._wbase = cur.base
            if cur.pos == 0:
                fsync_dir(self.dir)
        return self._wfd

    def write(self, block: bytes, count: int) -> None:
        """Append `count` lines in one write; the cursor moves past them.

        On failure (disk full) the partial bytes are cut off again, so nothing
        half-written stays, and LogUnavailable is raised.
        """
        try:
            fd = self._writer_fd(len(block))
        except OSError as e:
            raise LogUnavailable(f"cannot open a segment in {self.dir}: {e}") from e
        self.last_write = (self._cursor.path, self._cursor.pos)
        view = memoryview(block)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:
            try:
                os.truncate(self._cursor.path, self._cursor.pos)
            except OSError:
                log.exception("cannot cut off a failed write to %s", self._cursor.path)
            raise LogUnavailable(f"cannot write {self._cursor.path}: {e}") from e
        self._cursor.pos += len(block)
        self._cursor.line += count
        self._cursor.next_offset += count

    def cut_last_write(self) -> None:
        """Cut off the last block written (its sync failed: it was answered as failed, so
        it must not stay in the log). Hold the lock; LogUnavailable if it cannot be."""
        if self.last_write is None:
            return
        path, pos = self.last_write
        try:
            os.truncate(path, pos)
        except OSError as e:
            raise LogUnavailable(f"cannot cut a failed batch off {path}: {e}") from e
        self.last_write = None

    def sync(self) -> None:
        """Make the segment being appended to durable: this process's lines and any other
        process's (one that died between its write and its sync left them unsynced; the
        segments before were synced by whoever rolled past them)."""
        if self._wfd is None or self._wbase != self._cursor.base:
            self._cursor.sync()  # read here, not written
            return
        try:
            # fdatasync: an append changes data and size, both of which it flushes,
            # without the mtime update that costs fsync a second journal write.
            os.fdatasync(self._wfd)
        except OSError as e:
            raise LogUnavailable(f"cannot fsync {self._cursor.path}: {e}") from e


def wait_for_writers(pdir: Path, wait_s: float) -> bool:
    """Wait until every batch a writer had begun on the partition is done with (synced
    and sent to the stream, or cut off again): take its lock and let it go at once. A
    new batch may begin the moment it returns. False if the lock stayed busy for
    `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    delay = LOCK_RETRY_S[0]
    try:
        fd = os.open(pdir / LOCK_NAME, os.O_RDONLY)  # (a flock needs no write access)
    except FileNotFoundError:
        return True  # no writer has ever run here
    except OSError as e:
        raise LogUnavailable(f"cannot open the lock of {pdir}: {e}") from e
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True  # closing the file lets it go
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(delay)  # a blocking flock could not give up in time
                delay = min(delay * 2, LOCK_RETRY_S[1])
            except OSError as e:
                raise LogUnavailable(f"cannot lock {pdir}: {e}") from e
    finally:
        os.close(fd)
