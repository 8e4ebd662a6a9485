"""The relay: copies to each partition's stream what the file log holds beyond it.

The file is the primary log in phases 1-2; an append whose stream write failed
(Redis down, slow, or behind) leaves the stream short, never gapped. The relay
reads the stream's top, copies the following lines from the file in order
through the same append-if-next script, and so levels the two. Running it
twice, or beside writers, is harmless: the script refuses anything but the
next offset. It copies only lines their writer is done with (its partition
lock let go), made durable first: a batch being synced is the writer's to add
to the stream (the writer would find its entries there and answer
`redis_written: false`), and one whose sync fails is cut off again, so it must
never reach the stream. A partition whose writer stays busy past LOCK_WAIT_S is
left for the next pass (in burst mode, there is one).

A stream whose last entries were deleted by hand refuses their IDs (Redis keeps a
stream's last ID): the relay sets the last ID back to the stream's top and copies
them again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from ._exceptions import RedisUnavailable, StreamDamaged, StreamMismatch, TradelogError
from .filelog import wait_for_writers
from .records import StoredEvent
from .segments import Cursor, partition_dir
from .settings import Settings
from .state_file import holds
from .streamlog import StreamLog

__all__ = ["Relay", "RelayReport"]

log = logging.getLogger("tradelog.relay")

_BATCH = 2000
# Bytes of event data per script call: documents reach 16 MiB, and a call of many
# must still finish inside the Redis timeout (a call that times out copies nothing).
_BATCH_BYTES = 4 << 20
# How long a pass waits for a partition's writer to finish its batch (a few ms) before
# leaving that partition to the next pass.
LOCK_WAIT_S = 1.0
# What a copy reached: the log's end; a point to read again from the stream's top;
# lines a writer may still be working on (the next pass).
_END, _AGAIN, _BUSY = "end", "again", "busy"


@dataclass(slots=True)
class RelayReport:
    copied: dict[int, int] = field(default_factory=dict)  # partition -> entries copied
    behind: dict[int, int] = field(default_factory=dict)  # partition -> entries still missing

    @property
    def total(self) -> int:
        return sum(self.copied.values())


class Relay:
    """Levels the streams with the file log. It keeps a cursor per partition from one
    pass to the next, moved on over what the writers added to the stream meanwhile:
    finding the stream's top afresh each pass would read a segment (256 MiB) from its
    start, for every partition, several times a second."""

    def __init__(
        self, settings: Settings, stream: StreamLog, lock_wait_s: float = LOCK_WAIT_S
    ) -> None:
        self.settings = settings
        self.stream = stream
        self.lock_wait_s = lock_wait_s
        self._cursors: dict[int, Cursor] = {}

    def close(self) -> None:
        cursors, self._cursors = self._cursors, {}
        for cursor in cursors.values():
            with contextlib.suppress(OSError):
                cursor.close()

    def level(self, partition: int) -> int:
        """Copy what partition's stream misses; return how many entries were copied."""
        try:
            return self._level(partition)[0]
        finally:
            self.close()

    def _cursor(self, partition: int, offset: int) -> Cursor:
        """The partition's cursor at `offset`: moved on, or anew (the stream set back, or
        the segment replaced or cut short under it)."""
        cursor = self._cursors.get(partition)
        if cursor is not None and cursor.next_offset <= offset and cursor.current():
            cursor.skip_to(offset)
        else:
            if cursor is not None:
                cursor.close()
            pdir = partition_dir(self.settings.log_dir, partition)
            cursor = self._cursors[partition] = Cursor(pdir, partition, offset)
        return cursor

    def _level(self, partition: int) -> tuple[int, bool]:
        """Entries copied, and whether some were left because a writer stayed busy."""
        copied = 0
        for _ in range(1000):  # bounded: each round copies to the end or re-reads a moved top
            top = self.stream.top(partition)
            cursor = self._cursor(partition, top + 1)
            if cursor.next_offset < top + 1:
                self._cursors.pop(partition).close()
                raise TradelogError(
                    f"the stream of partition {partition} ends at offset {top}, "
                    f"beyond the file log's end ({cursor.next_offset - 1})"
                )
            reached, n = self._copy(partition, cursor)
            copied += n
            if reached != _AGAIN:
                return copied, reached == _BUSY
        return copied, False

    def _copy(self, partition: int, cursor: Cursor) -> tuple[str, int]:
        """Copy the log from `cursor` on, one read chunk (a few MiB) at a time, in script
        calls of bounded size; what it reached (_END, _AGAIN: the stream's top moved or
        was set back, or the lines read were cut off; _BUSY) and how many it copied.
        Short of the end, the cursor is put back before the chunk it did not copy."""
        copied = 0
        while True:
            start = cursor.at()
            events, _ = cursor.read(limit=1)  # one read chunk: memory stays bounded
            if not events:
                return _END, copied
            reached = self._copy_chunk(partition, cursor, events)
            if reached is not None:
                cursor.restore(start)
                return reached, copied
            copied += len(events)

    def _copy_chunk(self, partition: int, cursor: Cursor, events: list[StoredEvent]) -> str | None:
        """Copy one chunk, once final; None when it is in the stream, else why not."""
        if not wait_for_writers(cursor.pdir, self.lock_wait_s):
            return _BUSY
        if not holds(cursor.pdir, cursor.at(), events[-1].id):
            return _AGAIN  # a failed batch, cut off again
        if self.stream.top(partition) != events[0].offset - 1:
            return _AGAIN  # its writer added them (the usual case beside one)
        if self.settings.fsync != "off":
            cursor.sync()  # the lines of a writer killed before its fsync
        for part in _slices(events):
            try:
                self.stream.append(partition, part)
            except StreamMismatch:
                return _AGAIN  # a writer added entries meanwhile
            except StreamDamaged as e:
                log.warning("%s: the relay sets it back to copy them again", e)
                self.stream.rewind(partition)
                return _AGAIN
        return None

    def run_once(self) -> RelayReport:
        """One pass over every partition."""
        try:
            return self._pass()
        finally:
            self.close()

    def _pass(self) -> RelayReport:
        report = RelayReport()
        for p in range(self.settings.partitions):
            report.copied[p], busy = self._level(p)
            if busy:
                report.behind[p] = 1  # at least: its writer's batch
        return report

    def run(self, stop: threading.Event, until_caught_up: bool = False, idle_s: float = 0.2) -> int:
        """Level every partition again and again until `stop` (or once level)."""
        try:
            return self._run(stop, until_caught_up, idle_s)
        finally:
            self.close()

    def _run(self, stop: threading.Event, until_caught_up: bool, idle_s: float) -> int:
        total = 0
        waiting = False  # said once per outage, not every second of it
        while not stop.is_set():
            try:
                report = self._pass()
            except RedisUnavailable as e:
                if until_caught_up:
                    raise
                if not waiting:
                    log.warning("relay waits for Redis (start it, or check TRADELOG_REDIS_URL;"
                                " writes go on to the file log): %s", e)  # fmt: skip
                waiting = True
                stop.wait(1.0)
                continue
            if waiting:
                log.warning("relay: Redis answers again: copying what it missed")
                waiting = False
            total += report.total
            if report.total:
                log.info("relay copied %d entries", report.total)
            if until_caught_up and not report.total and not report.behind:
                return total
            if not report.total:
                stop.wait(idle_s)
        return total


def _slices(events: list[StoredEvent]) -> Iterator[list[StoredEvent]]:
    """`events` in runs of at most _BATCH events and _BATCH_BYTES of data (a bigger
    document alone)."""
    run: list[StoredEvent] = []
    size = 0
    for event in events:
        # Kept on the event: the stream entry is made of this very encoding.
        event.data_json = orjson.dumps(event.data)
        n = len(event.data_json)
        if run and (len(run) == _BATCH or size + n > _BATCH_BYTES):
            yield run
            run, size = [], 0
        run.append(event)
        size += n
    if run:
        yield run
