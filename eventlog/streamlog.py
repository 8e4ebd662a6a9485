"""The Redis log: one stream per partition, entry `0-(offset+1)`, never a gap.

Entries are added only by `append_if_next.lua`, which refuses unless the
stream's top is exactly the offset before the first new entry; so the stream
holds the file log's events at the same offsets, and catching up is idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
from redis.exceptions import NoScriptError

from lua import source

from ._exceptions import RedisUnavailable, StreamDamaged, StreamMismatch
from .keys import Keys
from .records import FIELDS, StoredEvent

__all__ = ["Sent", "StreamLog"]


class Sent:
    """Scripts sent on a connection taken from the pool, their answers not read yet."""

    def __init__(self, pool: Any, conn: Any, count: int) -> None:
        self._pool = pool
        self._conn = conn
        self._count = count

    def read(self) -> list[bool]:
        """For each batch sent, whether its stream took it. One that did not (its stream
        not where it follows, or the script not loaded) is for `append_values` to retry
        and explain; RedisUnavailable if the answers could not be read. Call it once:
        it hands the connection back."""
        taken: list[bool] = []
        try:
            for _ in range(self._count):
                try:
                    status, _top = self._conn.read_response()
                except redis.ResponseError:  # read whole: the connection stays in step
                    status = 0
                taken.append(status == 1)
        except Exception as e:  # a connection out of step is never handed back as it is
            self._conn.disconnect()
            raise RedisUnavailable(f"cannot append to the streams: {e}") from e
        finally:
            self._pool.release(self._conn)
        return taken


class StreamLog:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._script = source("append_if_next.lua")
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()

    def append(self, partition: int, events: Sequence[StoredEvent]) -> None:
        """Add events that follow the stream's top; StreamMismatch if they do not."""
        if events:
            self.append_values(partition, events[0].offset, [e.encode()[1] for e in events])

    def append_values(
        self, partition: int, first: int, entries: Sequence[Sequence[bytes | str]]
    ) -> None:
        """Add encoded entries (StoredEvent.encode values) starting at offset `first`.

        StreamMismatch if the stream does not end right before `first`; StreamDamaged
        if it does but can never take `first` (entries after it were deleted).
        """
        if not entries:
            return
        args: list[bytes | str | int] = [first, len(FIELDS)]
        for values in entries:
            args.extend(values)
        key = self.keys.log(partition)
        try:
            status, value = self._evalsha(key, args)
        except redis.RedisError as e:
            msg = f"cannot append to the stream of partition {partition}: {e}"
            raise RedisUnavailable(msg) from e
        if status == 2:
            raise StreamDamaged(partition, key, int(value))
        if status != 1:
            raise StreamMismatch(partition, first - 1, int(value))

    def send_many(
        self, batches: Sequence[tuple[int, int, Sequence[Sequence[bytes | str]]]]
    ) -> Sent:
        """Send several partitions' entries (partition, first offset, values) in one round
        trip, without waiting for the answers: `Sent.read` reads them, so the caller can
        work while Redis runs the scripts. RedisUnavailable if they could not be sent."""
        packed = []
        for p, first, entries in batches:
            args = [v for values in entries for v in values]
            command: Any = ("EVALSHA", self._sha, 1, self.keys.log(p), first, len(FIELDS), *args)
            packed.append(hiredis.pack_command(command))
        pool = self.client.connection_pool
        conn: Any = pool.get_connection()  # redis-py's Connection is untyped here
        try:
            conn.send_packed_command(packed, check_health=False)
        except Exception as e:  # a connection out of step is never handed back as it is
            conn.disconnect()
            pool.release(conn)
            raise RedisUnavailable(f"cannot append to the streams: {e}") from e
        return Sent(pool, conn, len(packed))

    def _evalsha(self, key: str, args: list[bytes | str | int]) -> Any:
        # Packed with hiredis in one call: redis-py's generic packer costs ~6 us an
        # event here (an isinstance per argument), more than the script itself.
        pool = self.client.connection_pool
        conn: Any = pool.get_connection()  # redis-py's Connection is untyped here
        try:
            for attempt in (1, 2):
                command: Any = ("EVALSHA", self._sha, 1, key, *args)
                packed = hiredis.pack_command(command)
                try:
                    conn.send_packed_command([packed], check_health=False)
                    return conn.read_response()
                except NoScriptError:
                    if attempt == 2:
                        raise
                    self._sha = self.client.script_load(self._script)
                except (redis.ConnectionError, redis.TimeoutError):
                    conn.disconnect()
                    raise
        finally:
            pool.release(conn)

    def rewind(self, partition: int) -> None:
        """Let the stream take the IDs after its top again: XDEL leaves a stream's last ID
        where it was, and XADD refuses IDs at or below it."""
        key = self.keys.log(partition)
        try:
            client: Any = self.client  # redis-py has no typed XSETID
            last = client.xrevrange(key, count=1)
            if client.exists(key):
                client.execute_command("XSETID", key, last[0][0] if last else "0-0")
        except redis.ResponseError as e:
            if "smaller than the target stream top" not in str(e):
                raise RedisUnavailable(
                    f"cannot rewind the stream of partition {partition}: {e}"
                ) from e
            # An entry was added since we read the top: the stream takes entries again.
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot rewind the stream of partition {partition}: {e}") from e

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
