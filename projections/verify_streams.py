"""Comparing a partition's stream with the file log, entry by entry, during the one pass.

The stream is derived from the file: each entry must carry the id of the file's event
at the same offset. The walk pages through the stream alongside the events the pass
reads, so the log is read once for the streams and the projections together; it
records the first divergence and, at the end, the tail the stream lacks or the
entries it holds beyond the file.
"""

from __future__ import annotations

from typing import Any, cast

import redis

from eventlog.records import StoredEvent

from .verify_report import StreamCheck

__all__ = ["StreamWalk"]

_XRANGE = 5000


class StreamWalk:
    """A partition's stream entries as (offset, event id), read in pages, compared in order."""

    def __init__(self, raw: redis.Redis, key: str, partition: int, file_end: int) -> None:
        self.raw, self.key = raw, key
        self.check = StreamCheck(partition, file_end, 0)
        self.page: list[tuple[int, bytes]] = []
        self.at = 0
        self.next_min = 0  # the lowest offset the next page starts from
        self.done = False

    def _fill(self) -> None:
        rows = cast(Any, self.raw.xrange(self.key, f"0-{self.next_min + 1}", "+", _XRANGE))
        self.page, self.at = [], 0
        for entry_id, values in rows:
            offset = int(bytes(entry_id).split(b"-", 1)[1]) - 1
            named = dict(zip(values[0::2], values[1::2], strict=True))
            self.page.append((offset, bytes(named.get(b"id", b""))))
        if self.page:
            self.next_min = self.page[-1][0] + 1
        self.done = len(rows) < _XRANGE

    def compare(self, events: list[StoredEvent]) -> None:
        if self.check.divergence is not None:
            return
        for event in events:
            if self.at >= len(self.page):
                if self.done:
                    return  # the stream ends here: the rest is its missing tail
                self._fill()
                if not self.page:
                    return
            offset, event_id = self.page[self.at]
            if offset > event.offset:
                self._diverge(event, None, "the stream has no entry at this offset")
                return
            if event_id.decode() != event.id:
                self._diverge(event, event_id.decode(), "another event at this offset")
                return
            self.at += 1

    def _diverge(self, event: StoredEvent, stream_id: str | None, why: str) -> None:
        self.check.divergence = {
            "offset": event.offset,
            "file_event": event.id,
            "stream_event": stream_id,
            "why": why,
        }

    def finish(self, log_end_now: int) -> StreamCheck:
        check = self.check
        top = cast(Any, self.raw.xrevrange(self.key, "+", "-", 1))
        check.stream_end = int(bytes(top[0][0]).split(b"-", 1)[1]) if top else 0
        check.missing_tail = max(0, check.file_end - check.stream_end)
        if check.divergence is None and check.stream_end > log_end_now:
            check.divergence = {
                "offset": log_end_now,
                "file_event": None,
                "stream_event": "…",
                "why": f"the stream holds {check.stream_end - log_end_now} entries "
                "beyond the end of the file log",
            }
        return check
