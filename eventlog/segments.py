"""Reading a partition's JSON-lines segments: the cursor shared by writers and readers.

A partition is a directory `p<NN>/` of segments named by the offset of their
first line (20 digits). A cursor walks complete lines only; the bytes after the
last newline of the last segment are a torn tail (a crash mid-write, never
acknowledged): readers wait for them, the writer cuts them off under the lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from ._exceptions import CorruptLog, LogUnavailable
from .marker import recorded_partitions
from .records import StoredEvent, partition_of
from .tail_scan import line_back

__all__ = ["Cursor", "Position", "partition_dir", "segment_bases", "segment_path"]

_CHUNK = 4 << 20


def partition_dir(log_dir: Path, partition: int) -> Path:
    return log_dir / f"p{partition:02d}"


def segment_path(pdir: Path, base: int) -> Path:
    return pdir / _segment_name(base)


def _segment_name(base: int) -> str:
    return f"{base:020d}.jsonl"


def segment_bases(pdir: Path) -> list[int]:
    try:
        names = os.listdir(pdir)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-6]) for n in names if n.endswith(".jsonl") and n[:-6].isdigit())


@dataclass(frozen=True, slots=True)
class Position:
    """Where a cursor stands: the next offset, and where that line starts."""

    offset: int
    base: int  # the segment's first offset
    pos: int  # byte in the segment
    line: int  # line number in the segment


class Cursor:
    """A position in one partition: the next offset, and where its line starts."""

    def __init__(self, pdir: Path, partition: int, offset: int = 0) -> None:
        self.pdir = pdir
        self._dir = str(pdir)  # plain strings: a tailing cursor polls many times a second
        self.partition = partition
        self.next_offset = 0
        self.base = 0
        self.pos = 0
        self.line = 0
        self._fd: int | None = None
        # P as the log recorded it (0: not recorded yet, nothing checked): an event whose
        # account does not hash here is a damaged line, however well it parses.
        self._partitions = recorded_partitions(pdir.parent) or 0
        if offset:
            self._seek(offset)

    @property
    def path(self) -> Path:
        return segment_path(self.pdir, self.base)

    def _file(self, base: int) -> str:
        return os.path.join(self._dir, _segment_name(base))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def at(self) -> Position:
        return Position(self.next_offset, self.base, self.pos, self.line)

    def restore(self, at: Position) -> None:
        """Stand where `at` once said, without reading what lies before."""
        self.close()
        self.next_offset, self.base, self.pos, self.line = at.offset, at.base, at.pos, at.line

    def _seek(self, offset: int) -> None:
        bases = segment_bases(self.pdir)
        before = [b for b in bases if b <= offset]
        self.base = self.next_offset = before[-1] if before else 0
        if bases and self.base == bases[-1]:
            self._seek_back(offset)
        self.skip_to(offset)

    def _seek_back(self, offset: int) -> None:
        """In the last segment, stand at `offset` by reading back from its end when that
        is nearer than its start (tail_scan.line_back); otherwise leave it to `skip_to`."""
        fd = self._open()
        if fd is None:
            return
        try:  # the cursor's own file: the same one, if an operator replaces it meanwhile
            with os.fdopen(os.dup(fd), "rb") as f:
                found = line_back(f, self.base, offset)
        except OSError:
            return  # read forward, which says what is wrong
        if found is not None:
            target, self.pos = found
            self.next_offset, self.line = target, target - self.base

    def skip_to(self, offset: int) -> None:
        """Move on to `offset` (or the log's end, if that comes first) without parsing
        the lines passed: one line is one offset."""
        scan = self.pos  # where the next chunk starts: past self.pos inside a long line
        while self.next_offset < offset:
            fd = self._open()
            if fd is None:
                break
            chunk = os.pread(fd, _CHUNK, scan)
            if not chunk:
                if scan != self.pos:
                    break  # only a partial line is left
                if not self._next_segment():
                    break
                scan = self.pos
                continue
            # A line longer than a chunk (documents reach 16 MiB) goes on in the next.
            lines = chunk.count(b"\n")
            if lines and self.next_offset + lines <= offset:  # the whole chunk, in C
                self.next_offset += lines
                self.line += lines
                self.pos = scan + chunk.rfind(b"\n") + 1
            else:
                start = 0
                while self.next_offset < offset:
                    end = chunk.find(b"\n", start)
                    if end < 0:
                        break
                    start = end + 1
                    self.next_offset += 1
                    self.line += 1
                    self.pos = scan + start
            scan += len(chunk)

    def current(self) -> bool:
        """Whether the segment it reads is still the file at its path and still reaches
        its position (not replaced or cut short since, by an operator's restore)."""
        try:
            st = os.stat(self._file(self.base))
            return st.st_size >= self.pos and (
                self._fd is None or os.fstat(self._fd).st_ino == st.st_ino
            )
        except FileNotFoundError:  # current if it has read nothing yet (an empty log)
            return self.pos == 0 and self._fd is None
        except OSError as e:
            raise LogUnavailable(f"cannot look at {self.path}: {e}") from e

    def sync(self) -> None:
        """Make the segment being read durable up to its end (fdatasync), lines a writer
        may still be syncing included."""
        if self._fd is not None:
            try:
                os.fdatasync(self._fd)
            except OSError as e:
                raise LogUnavailable(f"cannot sync {self.path}: {e}") from e

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self._file(self.base), os.O_RDONLY)
            except FileNotFoundError:
                return None
            except OSError as e:
                raise LogUnavailable(f"cannot open {self.path}: {e}") from e
        return self._fd

    def _next_segment(self) -> bool:
        if self.next_offset == self.base or not os.path.exists(self._file(self.next_offset)):
            return False
        self.close()
        self.base, self.pos, self.line = self.next_offset, 0, 0
        return True

    def read(self, limit: int = 0, *, most: int = 0) -> tuple[list[StoredEvent], int]:
        """Read complete lines after the cursor (at most about `limit` events if > 0).

        `most` > 0: never more than `most` events; the cursor stops after the last one
        taken, so the rest of the read chunk is read again next time instead of being
        parsed and held by the caller (a tailing projector would keep a chunk's
        remainder per partition, tens of thousands of events, between its steps).

        Returns the events and the length of a partial last line (0 if none).
        """
        events: list[StoredEvent] = []
        want = _CHUNK
        while True:
            fd = self._open()
            if fd is None:
                return events, 0
            try:
                # Bounded by the size: an idle poll allocates no read buffer.
                left = os.fstat(fd).st_size - self.pos
                chunk = os.pread(fd, min(want, left), self.pos) if left > 0 else b""
            except OSError as e:
                raise LogUnavailable(f"cannot read {self.path}: {e}") from e
            if left < 0:
                # Lines read were cut off again (a writer's failed write, read by one
                # without the lock): what this cursor holds is not the log.
                raise CorruptLog(str(self.path), self.line, "the segment is shorter than read")
            if not chunk:
                if self._next_segment():
                    continue
                return events, 0
            end = chunk.rfind(b"\n")
            if end < 0:
                if len(chunk) < want:
                    return events, len(chunk)
                want *= 2  # one line longer than a chunk
                continue
            want = _CHUNK
            self.pos += self._parse(chunk[: end + 1], events, most - len(events) if most else 0)
            if (limit and len(events) >= limit) or (most and len(events) >= most):
                return events, 0

    def _parse(self, block: bytes, out: list[StoredEvent], most: int = 0) -> int:
        """Parse `block`'s lines (only the first `most` if > 0); return the bytes taken."""
        start = 0
        n = len(block)
        stop = len(out) + most if most else -1
        while start < n and len(out) != stop:
            end = block.index(b"\n", start)
            self.line += 1
            try:
                event = StoredEvent.from_dict(orjson.loads(block[start:end]))
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
                raise CorruptLog(str(self.path), self.line, f"not an event: {e}") from e
            if event.offset != self.next_offset or event.partition != self.partition:
                raise CorruptLog(
                    str(self.path),
                    self.line,
                    f"position p{event.partition}:{event.offset} where "
                    f"p{self.partition}:{self.next_offset} was due",
                )
            if (
                self._partitions
                and partition_of(event.account, self._partitions) != event.partition
            ):
                raise CorruptLog(
                    str(self.path),
                    self.line,
                    f"account {event.account!r} does not belong in partition {self.partition}",
                )
            out.append(event)
            self.next_offset += 1
            start = end + 1
        return start
