"""The stored-event record: an event as it sits in the log, with its position.

Kept apart from the domain payload rules (`events.py`): a record is what was
appended, read back byte for byte, upcast to the current schema when read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "EVENT_TYPES",
    "REQUESTED_FRIENDS",
    "RULES",
    "SCHEMA_VERSION",
    "StoredEvent",
    "as_text",
    "partition_of",
    "utc_ts",
]

SCHEMA_VERSION = 1
# The fold's rules an event was appended under, in its `meta.rules` (absent: 1), so a
# replay folds every event as the projections did when it was new. 2: a save that
# changes offers sets trade_offers_updated_at; a null collection stays null; a
# state_history that is not a list is kept whole. 3: friends keep the client's order
# (a save's; a new friend last), where they were sorted by id.
RULES = 3

NEGOTIATIONS_SAVED = "NegotiationsSaved"
TRADE_OFFER_UPSERTED = "TradeOfferUpserted"
FRIEND_NEGOTIATION_UPSERTED = "FriendNegotiationUpserted"
FRIENDS_REMOVED = "FriendsRemoved"
LEGACY_IMPORTED = "LegacyImported"

EVENT_TYPES = frozenset(
    {
        NEGOTIATIONS_SAVED,
        TRADE_OFFER_UPSERTED,
        FRIEND_NEGOTIATION_UPSERTED,
        FRIENDS_REMOVED,
        LEGACY_IMPORTED,
    }
)

# The meta field of a keyed FriendsRemoved whose request also named absent friends:
# its data names only those present, and a retry of the request is told apart from
# another write by the whole list it asked for (api/retries.py).
REQUESTED_FRIENDS = "requested_friend_steam_ids"

# The order of the envelope's fields in a log line and in a stream entry.
FIELDS = ("id", "account", "version", "partition", "offset", "type", "ts", "data", "meta", "schema")


def partition_of(account: str, partitions: int) -> int:
    """The partition an account lives in: crc32 of its id modulo P."""
    return zlib.crc32(account.encode()) % partitions


def utc_ts(moment: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, as every `ts` is written."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ts_ms(ts: str) -> int:
    """Milliseconds since the epoch of a `ts` written by `utc_ts`."""
    moment = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# Not frozen: a frozen dataclass sets each field through object.__setattr__, ~1 us
# more per object, and one of these is made per appended or read event.
@dataclass(slots=True)
class StoredEvent:
    id: str
    account: str
    version: int
    partition: int
    offset: int
    type: str
    ts: str
    data: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    # `data` already encoded (the writer did, deciding it: decisions.py); `encode` uses it. Not
    # part of the record: an event read back has none and is equal all the same.
    data_json: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def rules(self) -> int:
        """The fold's rules this event was appended under (RULES)."""
        rules = self.meta.get("rules", 1)
        return rules if type(rules) is int else 1

    def to_dict(self, data: Any = None, meta: Any = None) -> dict[str, Any]:
        """The envelope as a dict (data and meta may be given pre-encoded, as Fragments)."""
        return {
            "id": self.id,
            "account": self.account,
            "version": self.version,
            "partition": self.partition,
            "offset": self.offset,
            "type": self.type,
            "ts": self.ts,
            "data": self.data if data is None else data,
            "meta": self.meta if meta is None else meta,
            "schema": self.schema,
        }

    def to_line(self) -> bytes:
        """The event's JSON-lines form, newline included."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_APPEND_NEWLINE)

    def encode(self) -> tuple[bytes, list[bytes | str]]:
        """The log line and the stream entry's values (in FIELDS order), sharing one
        encoding of data and meta: the append path encodes each event once."""
        data = self.data_json if self.data_json is not None else orjson.dumps(self.data)
        meta = orjson.dumps(self.meta)
        line = orjson.dumps(
            self.to_dict(orjson.Fragment(data), orjson.Fragment(meta)),
            option=orjson.OPT_APPEND_NEWLINE,
        )
        values: list[bytes | str] = [
            self.id, self.account, str(self.version), str(self.partition), str(self.offset),
            self.type, self.ts, data, meta, str(self.schema),
        ]  # fmt: skip
        return line, values

    def stream_fields(self) -> list[bytes | str]:
        """Field/value pairs of the stream entry: the envelope, data and meta as JSON."""
        return [
            "id", self.id,
            "account", self.account,
            "version", str(self.version),
            "partition", str(self.partition),
            "offset", str(self.offset),
            "type", self.type,
            "ts", self.ts,
            "data", orjson.dumps(self.data),
            "meta", orjson.dumps(self.meta),
            "schema", str(self.schema),
        ]  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StoredEvent:
        """Build a record from a decoded envelope, upcasting older schemas.

        Raises KeyError/TypeError/ValueError on a malformed envelope; callers at
        the file and stream boundaries turn those into CorruptLog.
        """
        schema = int(raw.get("schema", 1))
        data, meta = raw["data"], raw.get("meta") or {}
        # Copied only if not a dict already (orjson gives fresh dicts): the checks stay.
        # Schema 1 is current: nothing to upcast yet. Later schemas add steps here.
        return cls(
            str(raw["id"]),
            str(raw["account"]),
            int(raw["version"]),
            int(raw["partition"]),
            int(raw["offset"]),
            str(raw["type"]),
            str(raw["ts"]),
            data if type(data) is dict else dict(data),
            meta if type(meta) is dict else dict(meta),
            max(schema, SCHEMA_VERSION),
        )

    @classmethod
    def from_line(cls, line: bytes) -> StoredEvent:
        return cls.from_dict(orjson.loads(line))

    @classmethod
    def from_stream_fields(cls, fields: dict[bytes, bytes] | dict[str, str]) -> StoredEvent:
        f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        return cls(
            id=as_text(f["id"]),
            account=as_text(f["account"]),
            version=int(f["version"]),
            partition=int(f["partition"]),
            offset=int(f["offset"]),
            type=as_text(f["type"]),
            ts=as_text(f["ts"]),
            data=orjson.loads(f["data"]),
            meta=orjson.loads(f["meta"]),
            schema=int(f.get("schema", 1)),
        )


def as_text(value: bytes | str) -> str:
    """A Redis reply's string, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value
