"""A retried write must be the same write: the check of a repeated Idempotency-Key.

The writer answers a key it has seen with the first write's result and appends
nothing (Guarantee 6). A key reused for another write (another offer, another
friend, another route) would get the first write's version and event id beside
its own request's fields, an answer that describes nothing that happened; it
gets 422 instead, and still nothing is appended. The first event is read back
from the log: retries are rare, and the writer keeps only where each keyed
event went, not its data (a document can be megabytes).
"""

from __future__ import annotations

import asyncio

from eventlog._exceptions import IdempotencyKeyReused
from eventlog.commands import AppendResult, Command
from eventlog.records import FRIENDS_REMOVED, StoredEvent
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings

__all__ = ["check_retry"]


async def check_retry(settings: Settings, cmd: Command, result: AppendResult) -> None:
    """IdempotencyKeyReused if `result` answers `cmd` from a first write that differs."""
    if not result.duplicate or result.offset is None or not cmd.idempotency_key:
        return
    first = await asyncio.to_thread(_event_at, settings, result.partition, result.offset)
    if first is None or first.id != result.event_id:
        return  # not where the writer said (cut off since): nothing to compare with
    if not _same_write(first, cmd):
        raise IdempotencyKeyReused(cmd.idempotency_key, cmd.account, first.version, first.type)


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
    if cmd.type == FRIENDS_REMOVED:  # the event names only the friends that were present
        return set(first.data["friend_steam_ids"]) <= set(cmd.data["friend_steam_ids"])
    return first.data == cmd.data
