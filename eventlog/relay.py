"""The relay: copies to each partition's stream what the file log holds beyond it.

The file is the primary log in phases 1-2; an append whose stream write failed
(Redis down, slow, or behind) leaves the stream short, never gapped. The relay
reads the stream's top, copies the following lines from the file in order
through the same append-if-next script, and so levels the two. Running it
twice, or beside writers, is harmless: the script refuses anything but the
next offset.

A stream whose last entries were deleted by hand refuses their IDs (Redis keeps a
stream's last ID): the relay sets the last ID back to the stream's top and copies
them again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import orjson

from ._exceptions import RedisUnavailable, StreamDamaged, StreamMismatch, TradelogError
from .records import StoredEvent
from .segments import Cursor, partition_dir
from .settings import Settings
from .streamlog import StreamLog

__all__ = ["Relay", "RelayReport"]

log = logging.getLogger("tradelog.relay")

_BATCH = 2000
# Bytes of event data per script call: documents reach 16 MiB, and a call of many
# must still finish inside the Redis timeout (a call that times out copies nothing).
_BATCH_BYTES = 4 << 20


@dataclass(slots=True)
class RelayReport:
    copied: dict[int, int] = field(default_factory=dict)  # partition -> entries copied
    behind: dict[int, int] = field(default_factory=dict)  # partition -> entries still missing

    @property
    def total(self) -> int:
        return sum(self.copied.values())


class Relay:
    def __init__(self, settings: Settings, stream: StreamLog) -> None:
        self.settings = settings
        self.stream = stream

    def level(self, partition: int) -> int:
        """Copy what partition's stream misses; return how many entries were copied."""
        pdir = partition_dir(self.settings.log_dir, partition)
        copied = 0
        for _ in range(1000):  # bounded: each round either copies or re-reads a moved top
            top = self.stream.top(partition)
            cursor = Cursor(pdir, partition, top + 1)
            try:
                events, _ = cursor.read(limit=_BATCH)
            finally:
                cursor.close()
            if cursor.next_offset < top + 1:
                raise TradelogError(
                    f"the stream of partition {partition} ends at offset {top}, "
                    f"beyond the file log's end ({cursor.next_offset - 1})"
                )
            if not events:
                return copied
            events = _first_of(events[:_BATCH], _BATCH_BYTES)
            try:
                self.stream.append(partition, events)
            except StreamMismatch:
                continue  # a writer added entries meanwhile: read the top again
            except StreamDamaged as e:
                log.warning("%s: the relay sets it back to copy them again", e)
                self.stream.rewind(partition)
                continue
            copied += len(events)
        return copied

    def run_once(self) -> RelayReport:
        report = RelayReport()
        for p in range(self.settings.partitions):
            report.copied[p] = self.level(p)
        return report

    def run(self, stop: threading.Event, until_caught_up: bool = False, idle_s: float = 0.2) -> int:
        """Level every partition again and again until `stop` (or once level)."""
        total = 0
        while not stop.is_set():
            try:
                report = self.run_once()
            except RedisUnavailable as e:
                if until_caught_up:
                    raise
                log.warning("relay waits for Redis: %s", e)
                stop.wait(1.0)
                continue
            total += report.total
            if report.total:
                log.info("relay copied %d entries", report.total)
            if until_caught_up and not report.total:
                return total
            if not report.total:
                stop.wait(idle_s)
        return total


def _first_of(events: list[StoredEvent], budget: int) -> list[StoredEvent]:
    """The first events whose data fits in `budget` bytes (at least one)."""
    for i, event in enumerate(events):
        budget -= len(orjson.dumps(event.data))
        if budget < 0:
            return events[: max(1, i)]
    return events
