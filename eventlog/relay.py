"""The relay: copies to each partition's stream what the file log holds beyond it.

The file is the primary log in phases 1-2; an append whose stream write failed
(Redis down, slow, or behind) leaves the stream short, never gapped. The relay
reads the stream's top, copies the following lines from the file in order
through the same append-if-next script, and so levels the two. Running it
twice, or beside writers, is harmless: the script refuses anything but the
next offset.

A stream whose last entries were deleted by hand can never take their IDs again:
the relay names it and goes on with the other partitions; `--until-caught-up`
then fails with what to do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from ._exceptions import RedisUnavailable, StreamDamaged, StreamMismatch, TradelogError
from .segments import Cursor, partition_dir
from .settings import Settings
from .streamlog import StreamLog

__all__ = ["Relay", "RelayReport"]

log = logging.getLogger("tradelog.relay")

_BATCH = 2000


@dataclass(slots=True)
class RelayReport:
    copied: dict[int, int] = field(default_factory=dict)  # partition -> entries copied
    behind: dict[int, int] = field(default_factory=dict)  # partition -> entries still missing
    damaged: dict[int, StreamDamaged] = field(default_factory=dict)  # partitions it cannot level

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
            events = events[:_BATCH]
            try:
                self.stream.append(partition, events)
            except StreamMismatch:
                continue  # a writer added entries meanwhile: read the top again
            copied += len(events)
        return copied

    def run_once(self) -> RelayReport:
        report = RelayReport()
        for p in range(self.settings.partitions):
            try:
                report.copied[p] = self.level(p)
            except StreamDamaged as e:
                report.damaged[p] = e
        return report

    def run(self, stop: threading.Event, until_caught_up: bool = False, idle_s: float = 0.2) -> int:
        """Level every partition again and again until `stop` (or once level)."""
        total = 0
        told: set[int] = set()  # damaged partitions already logged
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
            for p, damage in report.damaged.items():
                if p not in told:
                    log.error("relay cannot level partition %d: %s", p, damage)
            told = set(report.damaged)
            if until_caught_up and not report.total:
                if report.damaged:
                    raise next(iter(report.damaged.values()))
                return total
            if not report.total:
                stop.wait(idle_s)
        return total
