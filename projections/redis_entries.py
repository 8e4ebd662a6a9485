"""The projector's stream entries: ids that are log offsets, fields that are events.

Each partition's stream holds the log's event at offset n as entry `0-<n+1>`
(the log writes them so), with the fields StoredEvent.encode writes. An
entry read back is decoded here and checked against the place it was read from.
"""

from __future__ import annotations

from typing import Any

import orjson

from eventlog._exceptions import CorruptLog
from eventlog.records import FIELDS, StoredEvent

__all__ = ["Entries", "entry_id", "offset_of", "read_entry"]

_NAMES = [name.encode() for name in FIELDS]
Entries = list[tuple[bytes, Any]]  # (entry id, flat field/value list or None if deleted)


def offset_of(entry_id: bytes) -> int:
    """The log offset of a stream entry id (`0-<offset+1>`)."""
    return int(entry_id.split(b"-", 1)[1]) - 1


def entry_id(event: StoredEvent) -> bytes:
    return b"0-%d" % (event.offset + 1)


def _decode(f: list[bytes]) -> StoredEvent:
    if len(f) == 20 and f[0::2] == _NAMES:  # as StoredEvent.encode writes it
        return StoredEvent(
            f[1].decode(), f[3].decode(), int(f[5]), int(f[7]), int(f[9]), f[11].decode(),
            f[13].decode(), orjson.loads(f[15]), orjson.loads(f[17]), int(f[19]),
        )  # fmt: skip
    return StoredEvent.from_stream_fields(dict(zip(f[0::2], f[1::2], strict=True)))


def read_entry(stream: str, p: int, eid: bytes, fields: list[bytes]) -> StoredEvent:
    """The event of partition `p`'s stream entry; CorruptLog if it is not the one at `eid`."""
    offset = offset_of(eid)
    try:
        event = _decode(fields)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptLog(stream, offset, f"unreadable stream entry: {e!r}") from e
    if event.offset != offset or event.partition != p:
        where = f"{event.partition}:{event.offset}"
        raise CorruptLog(stream, offset, f"the entry says it is at {where}")
    return event
