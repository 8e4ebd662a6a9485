"""A retried write must be the same write: the check of a repeated Idempotency-Key.

The writer answers a key it has seen with the first write's result and appends
nothing (Guarantee 6). A key reused for another write (another offer, another
friend, another route) would get the first write's version and event id beside
its own request's fields, an answer that describes nothing that happened; it
gets 422 instead, and still nothing is appended. The first event is read back,
from its stream entry (one XRANGE) or else from the file log (a seek through its
segment): the writer keeps only where each keyed event went, not its data (a
document can be megabytes).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from eventlog._exceptions import IdempotencyKeyReused, RedisUnavailable
from eventlog.commands import AppendResult, Command
from eventlog.records import FRIENDS_REMOVED, REQUESTED_FRIENDS, StoredEvent
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog

__all__ = ["check_retry"]


async def check_retry(
    settings: Settings, stream: StreamLog | None, cmd: Command, result: AppendResult
) -> AppendResult:
    """IdempotencyKeyReused if `result` answers `cmd` from a first write that differs;
    else `result`, saying `redis_written` if the first write's entry was found in the
    stream (the writer knows that only of what it added since it started)."""
    if not result.duplicate or result.offset is None or not cmd.idempotency_key:
        return result
    p, offset = result.partition, result.offset
    first = await asyncio.to_thread(_entry_at, stream, p, offset) if stream else None
    in_stream = first is not None and first.id == result.event_id
    if first is None:
        first = await asyncio.to_thread(_event_at, settings, p, offset)
    if first is None or first.id != result.event_id:
        return result  # not where the writer said (cut off since): nothing to compare with
    if not _same_write(first, cmd):
        raise IdempotencyKeyReused(cmd.idempotency_key, cmd.account, first.version, first.type)
    return replace(result, redis_written=True) if in_stream else result


def _entry_at(stream: StreamLog, partition: int, offset: int) -> StoredEvent | None:
    try:
        events = stream.read(partition, offset, count=1)
    except RedisUnavailable:
        return None  # the file log has it
    return events[0] if events and events[0].offset == offset else None


def _event_at(settings: Settings, partition: int, offset: int) -> StoredEvent | None:
    cursor = Cursor(partition_dir(settings.log_dir, partition), partition, offset)
    try:
        events, _ = cursor.read(limit=1)
    finally:
        cursor.close()
    return events[0] if events else None


def _same_write(first: StoredEvent, cmd: Command) -> bool:
    if first.type != cmd.type:
        return False
    if cmd.type == FRIENDS_REMOVED:
        # The event names only the friends that were present, so it cannot tell a
        # retry from a request naming more (one present now would be answered "not
        # found" and left in place); the writer records the whole list asked for in
        # meta when it differs. The order does not change what a removal does.
        asked = first.meta.get(REQUESTED_FRIENDS, first.data["friend_steam_ids"])
        return set(asked) == set(cmd.data["friend_steam_ids"])
    return first.data == cmd.data
