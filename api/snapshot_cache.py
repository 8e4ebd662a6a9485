"""The GET path's copies of documents, served again while their source is unchanged.

Reading a ~300 KB snapshot is most of a phase-1 GET's own time (~90 µs in the
server, where the answer's copies compete for the CPU cache). The bots read the
same documents again and again, so a worker keeps the bytes it read, bounded in
total size, and serves them again while the file is the one they were read from.

Which file: its inode, size and times, and the version it holds, read from its
last 4 KiB (the projector writes the version near the end). The times alone would
not do: the kernel's clock is coarse, a freed inode number is soon given again,
and two versions of a document can have one size. The version cannot repeat: an
account's versions only grow, and each one's bytes are the fold's. A snapshot
whose version is not in its tail (a client's own `version` key placed early in
the document) is read every time.

The Redis projection (phase 2) is kept the same way, under the version its meta
hash holds (reads.py): a read is one version's state (redis_reader), and by
Guarantee 4 a version's state is the fold of the log up to it, the same after any
rebuild. A copy is checked with one HGET, against the two round trips moving the
whole document (~3 ms for 300 KB).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from projections.snapshots import version_of

__all__ = ["Copies", "Loaded", "SnapshotCache"]

Loaded = tuple[bytes | None, int]  # the document's bytes (None: no projection) and version
_Key = tuple[int, int, int, int, int]
K = TypeVar("K")
_TAIL = 4096


class Copies(Generic[K]):
    """Documents' bytes kept by name, each with the key it is valid under; the least
    recently used go once they pass `limit_bytes` in all."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._items: OrderedDict[str, tuple[K, bytes, int]] = OrderedDict()

    def key(self, name: str) -> K | None:
        """The key of the copy kept under `name` (None: none is)."""
        hit = self._items.get(name)
        return None if hit is None else hit[0]

    def get(self, name: str, key: K) -> Loaded | None:
        """The copy kept under `name` if it is valid under `key`."""
        hit = self._items.get(name)
        if hit is None or hit[0] != key:
            return None
        self._items.move_to_end(name)
        return hit[1], hit[2]

    def put(self, name: str, key: K, loaded: Loaded) -> None:
        """Keep `loaded` under `name`, valid under `key` (a missing document: nothing)."""
        self.drop(name)
        body, version = loaded
        if body is not None and len(body) <= self.limit // 4:
            self._items[name] = (key, body, version)
            self.size += len(body)
            while self.size > self.limit:
                _, (_, old, _) = self._items.popitem(last=False)
                self.size -= len(old)

    def drop(self, name: str) -> None:
        old = self._items.pop(name, None)
        if old is not None:
            self.size -= len(old[1])


class SnapshotCache:
    """Snapshot files' bytes, valid while the file is the one they were read from."""

    def __init__(self, limit_bytes: int) -> None:
        self.copies: Copies[_Key] = Copies(limit_bytes)

    @property
    def size(self) -> int:
        return self.copies.size

    def get(self, path: str, load: Callable[[], Loaded]) -> Loaded:
        """The document at `path`: the copy kept if the file is unchanged since it was
        read, else `load()`'s (kept for next time)."""
        key = _key(path)
        if key is None:  # not there, unreadable, or no version in its tail: `load` says
            self.copies.drop(path)
            return load()
        hit = self.copies.get(path, key)
        if hit is not None:
            return hit
        # Read after the key: if the file changed in between, the copy is newer than its
        # key says, and the next look misses (never the other way round).
        loaded = load()
        self.copies.put(path, key, loaded)
        return loaded


def _key(path: str) -> _Key | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        tail = os.pread(fd, _TAIL, max(0, st.st_size - _TAIL))
    except OSError:
        return None
    finally:
        os.close(fd)
    version = version_of(tail)
    if version is None:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, version
