"""The GET path's copies of snapshot bytes, served again while the file is unchanged.

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
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

from projections.snapshots import version_of

__all__ = ["ENTRY_BYTES", "Loaded", "SnapshotCache"]

Loaded = tuple[bytes | None, int]  # the document's bytes (None: no projection) and version
_Key = tuple[int, int, int, int, int]
_TAIL = 4096
# What an entry costs beside its document's bytes (the path, the key and its five ints,
# the tuples, the dict's node), counted toward the limit: many small documents would
# otherwise hold twice the limit (134,000 documents of 250 bytes: 71 MiB for 32).
ENTRY_BYTES = 512


class SnapshotCache:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._items: OrderedDict[str, tuple[_Key, bytes, int]] = OrderedDict()

    def get(self, path: str, load: Callable[[], Loaded]) -> Loaded:
        """The document at `path`: the copy kept if the file is unchanged since it was
        read, else `load()`'s (kept for next time)."""
        key = _key(path)
        if key is None:  # not there, unreadable, or no version in its tail: `load` says
            self._drop(path)
            return load()
        hit = self._items.get(path)
        if hit is not None and hit[0] == key:
            self._items.move_to_end(path)
            return hit[1], hit[2]
        # Read after the key: if the file changed in between, the copy is newer than its
        # key says, and the next look misses (never the other way round).
        body, version = load()
        self._drop(path)
        if body is not None and len(body) <= self.limit // 4:
            self._items[path] = (key, body, version)
            self.size += len(body) + ENTRY_BYTES
            while self.size > self.limit:
                _, (_, old, _) = self._items.popitem(last=False)
                self.size -= len(old) + ENTRY_BYTES
        return body, version

    def _drop(self, path: str) -> None:
        old = self._items.pop(path, None)
        if old is not None:
            self.size -= len(old[1]) + ENTRY_BYTES


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
