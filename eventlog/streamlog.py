"""The Redis log: one stream per partition, entry `0-(offset+1)`, never a gap.

Entries are added only by `append_if_next.lua`, which refuses unless the
stream's top is exactly the offset before the first new entry; so the stream
holds the file log's events at the same offsets, and catching up is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis

from lua import source

from ._exceptions import RedisUnavailable, StreamMismatch
from .keys import Keys
from .records import FIELDS, StoredEvent

__all__ = ["StreamLog"]

_WIDTH = 2 * len(FIELDS)


class StreamLog:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._append = client.register_script(source("append_if_next.lua"))

    def append(self, partition: int, events: Sequence[StoredEvent]) -> None:
        """Add events that follow the stream's top; StreamMismatch if they do not."""
        if not events:
            return
        args: list[bytes | str | int] = [events[0].offset, _WIDTH]
        for e in events:
            args.extend(e.stream_fields())
        try:
            status, value = self._append(keys=[self.keys.log(partition)], args=args)
        except redis.RedisError as e:
            raise RedisUnavailable(
                f"cannot append to the stream of partition {partition}: {e}"
            ) from e
        if status != 1:
            raise StreamMismatch(partition, events[0].offset - 1, int(value))

    def top(self, partition: int) -> int:
        """The last offset the stream holds, -1 when it holds none."""
        try:
            last = self.client.xrevrange(self.keys.log(partition), count=1)
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot read the stream of partition {partition}: {e}") from e
        if not last:
            return -1
        entry_id = cast(bytes, last[0][0])
        return int(entry_id.split(b"-")[1]) - 1

    def read(self, partition: int, from_offset: int, count: int = 1000) -> list[StoredEvent]:
        """Up to `count` events from `from_offset` on, in order."""
        try:
            entries = self.client.xrange(
                self.keys.log(partition), min=f"0-{from_offset + 1}", count=count
            )
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot read the stream of partition {partition}: {e}") from e
        rows = cast(list[tuple[bytes, dict[bytes, bytes]]], entries or [])
        return [StoredEvent.from_stream_fields(fields) for _, fields in rows]

    def ids(self, partition: int, from_offset: int, count: int = 10000) -> list[tuple[int, str]]:
        """(offset, event id) pairs from `from_offset` on, for verifying against the file."""
        return [(e.offset, e.id) for e in self.read(partition, from_offset, count)]
