"""The dual write's second half: a partition's batch, once in the file, added to its stream.

The write is bounded: in phases 1-2 Redis being down or slow never fails an append;
the result then says `redis_written: false` and the relay fills the stream in later.
A stream a little behind (an earlier batch's write failed) is filled in from the
file first; a stream whose tail was deleted by hand is set back and written again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import StreamDamaged, StreamMismatch
from .segments import Cursor
from .streamlog import Sent, StreamLog

if TYPE_CHECKING:
    from .writer import Writer

__all__ = ["RoundAdds", "StreamCopy"]

log = logging.getLogger("tradelog.writer")

_REDIS_RETRY_S = 1.0
_FILL_LIMIT = 10_000  # how far behind the stream may be for the writer to fill it itself


class StreamCopy:
    """One partition's batches, added to its stream after the file; `top` is the last
    offset this process knows the stream holds (-2: unknown)."""

    def __init__(self, writer: Writer, partition: int, directory: Path) -> None:
        self.w = writer
        self.p = partition
        self.dir = directory  # the partition's file log, to fill the stream in from
        self.top = -2  # unknown

    def add(self, first: int, entries: list[list[bytes | str]]) -> bool:
        """Whether the stream took the batch the file holds from offset `first`."""
        stream = _askable(self.w)
        if stream is None:
            return False
        try:
            try:
                added = self._append_or_fill(stream, first, entries)
            except StreamDamaged as e:
                # Its tail was deleted by hand: set its last ID back (as the relay does).
                log.warning("%s: setting it back", e)
                stream.rewind(self.p)
                added = self._append_or_fill(stream, first, entries)
            if not added:
                return False
        except Exception as e:
            _failed(self.w, f"partition {self.p}", e)
            return False
        self.stored(first, entries)
        return True

    def stored(self, first: int, entries: list[list[bytes | str]]) -> None:
        """The stream holds the batch now: Redis answers writes again."""
        self.top = first + len(entries) - 1
        self.w.redis_failing = False

    def _append_or_fill(
        self, stream: StreamLog, first: int, entries: list[list[bytes | str]]
    ) -> bool:
        """Add the entries; if the stream is a little behind, fill it in from the file
        first, under the committer's partition lock. False if it is far behind: the relay's job."""
        try:
            stream.append_values(self.p, first, entries)
        except StreamMismatch as e:
            gap = first - 1 - e.actual_top
            if e.actual_top > first - 1:  # added by someone that did not wait for the lock
                log.warning(
                    "the stream of partition %d already holds offsets up to %d, past this "
                    "batch's first (%d): the batch is answered as not written to it",
                    self.p, e.actual_top, first,
                )  # fmt: skip
                return False
            if gap > _FILL_LIMIT:
                return False  # far behind: the relay's job
            cursor = Cursor(self.dir, self.p, e.actual_top + 1)
            try:
                missing, _ = cursor.read(limit=gap)
            finally:
                cursor.close()
            filled = [m.encode()[1] for m in missing[:gap]]
            stream.append_values(self.p, e.actual_top + 1, filled + entries)
        return True


class RoundAdds:
    """A round's batches, one per partition, sent to their streams in one round trip;
    `took` reads the answers later, so the commit loop stages its next round while
    Redis runs the scripts."""

    def __init__(
        self, writer: Writer, batches: list[tuple[StreamCopy, int, list[list[bytes | str]]]]
    ) -> None:
        self.w = writer
        self.batches = batches
        self._sent: Sent | None = None  # None: Redis not asked (off, failed, or nothing)
        stream = _askable(writer)
        if stream is None or not batches:
            return
        try:
            self._sent = stream.send_many([(c.p, first, e) for c, first, e in batches])
        except Exception as e:
            _failed(writer, "a round", e)

    def took(self) -> list[bool]:
        """For each batch, whether its stream took it. A stream that refused is handled as
        `StreamCopy.add` handles it (filled in, set back, or left to the relay)."""
        sent, self._sent = self._sent, None
        if sent is None:
            return [False] * len(self.batches)
        try:
            taken = sent.read()
        except Exception as e:
            _failed(self.w, "a round", e)
            return [False] * len(self.batches)
        out = []
        for (copy, first, entries), ok in zip(self.batches, taken, strict=True):
            if ok:
                copy.stored(first, entries)
            out.append(ok or copy.add(first, entries))
        return out


def _askable(writer: Writer) -> StreamLog | None:
    """The writer's stream log, unless Redis is off or failed less than a second ago."""
    if writer.stream is None or time.monotonic() < writer.redis_retry_at:
        return None
    return writer.stream


def _failed(writer: Writer, what: str, error: Exception) -> None:
    # The events are durable in the file by now: whatever the stream did, the appends
    # stand and the relay copies them later; Redis is left alone for a second.
    log.warning("stream append failed for %s: %s", what, error)
    writer.redis_retry_at = time.monotonic() + _REDIS_RETRY_S
    writer.redis_failures += 1
    writer.redis_failing = True
