"""A big log made fast, as the input of `bench scale` and `bench memory`.

replay_log's generator writes the events straight into the partition segments
(valid offsets and versions, the bots' mix), untimed: the writer's group commit
would spend minutes on what is only a scenario's input. Here every event also
goes to its partition's stream, in batches through `append_if_next` (the
writer's own script), so the streams hold exactly the file's events at the same
offsets, as the writer's dual write leaves them: the Redis projector can read
them, and a Writer opened on the log appends to the streams as usual.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import redis

from eventlog.keys import Keys
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from projections.gcpause import paused

from .replay_log import generate_log

__all__ = ["drop_keys", "make_log"]

_BATCH = 500  # entries per script call: larger ones cost more per entry (Lua)


class _Streams:
    """Buffers each partition's entries and adds them in order, a batch at a time.

    A thread of its own sends them: Redis runs one batch while the next is generated.
    """

    def __init__(self, stream: StreamLog, partitions: int) -> None:
        self.stream = stream
        self.first = [0] * partitions
        self.pending: list[list[list[bytes | str]]] = [[] for _ in range(partitions)]
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=64)  # bounded: ~30 MB ahead
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._send, name="bench-streams", daemon=True)
        self.thread.start()

    def _send(self) -> None:
        while (item := self.queue.get()) is not None:
            if not self.failed:
                try:
                    self.stream.append_values(*item)
                except BaseException as e:  # raised in the generating thread by close()
                    self.failed.append(e)

    def add(self, partition: int, offset: int, values: list[bytes | str]) -> None:
        pending = self.pending[partition]
        if not pending:
            self.first[partition] = offset
        pending.append(values)
        if len(pending) >= _BATCH:
            self.queue.put((partition, self.first[partition], pending))
            self.pending[partition] = []

    def close(self) -> None:
        for p, pending in enumerate(self.pending):
            if pending:
                self.queue.put((p, self.first[p], pending))
        self.queue.put(None)
        self.thread.join()
        if self.failed:
            raise self.failed[0]


def make_log(
    settings: Settings,
    events: int,
    accounts: int,
    first_account: int | None = None,
    steady: bool = False,
) -> str:
    """Write `events` of replay's mix into an empty log and its streams; say how long.
    `steady`: see replay_log."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=60)
    start = time.perf_counter()
    streams = _Streams(StreamLog(client, Keys(settings.key_prefix)), settings.partitions)
    # The collector would rescan the generator's growing state over and over.
    try:
        with paused():
            size = generate_log(
                settings.log_dir,
                settings.partitions,
                events,
                accounts,
                first_account=first_account,
                sink=streams.add,
                steady=steady,
            )
    finally:
        try:
            streams.close()
        finally:
            client.close()
    took = time.perf_counter() - start
    return f"{events:,} events over {accounts:,} accounts ({size / 2**20:,.0f} MiB) in {took:.1f} s"


def drop_keys(settings: Settings) -> None:
    """Remove every key under the settings' prefix (a finished size's streams, state)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=60)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()
