"""Commands: what a caller asks the writer to append, checked before it is queued."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from ._exceptions import InvalidInput
from .events import (
    check_steam_id,
    validate_document,
    validate_friend_ids,
    validate_negotiation,
    validate_offer,
)
from .records import (
    EVENT_TYPES,
    FRIEND_NEGOTIATION_UPSERTED,
    FRIENDS_REMOVED,
    NEGOTIATIONS_SAVED,
    RULES,
    TRADE_OFFER_UPSERTED,
    partition_of,
)
from .state import Findings

__all__ = [
    "MAX_DEPTH", "MAX_VERSION", "PEEK", "AppendResult", "Command", "encode_data", "make_command",
    "peek_command",
]  # fmt: skip

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A command that appends nothing and answers the account's version in the log: the
# writer's own, never an event type (make_command refuses it).
PEEK = "peek"

# orjson encodes at most 254 nested containers. An event's data sits two levels deep in
# a log line and four in a GET .../events answer, so deeper data would be accepted here
# and then fail the encode of its whole commit batch (every write staged with it: a 500
# for each, an import stopped by a traceback). The data object itself is level 1.
MAX_DEPTH = 200
# No account reaches it; an expected version past it could never match, and answers
# and metrics that carry it must stay 64-bit integers (orjson and Redis refuse more).
MAX_VERSION = 2**63 - 1
_WRAPS = 254 - MAX_DEPTH


def encode_data(data: dict[str, Any]) -> bytes:
    """`data` as JSON; InvalidInput if it nests deeper than MAX_DEPTH (or cannot be JSON).

    The writer calls it as it decides an event (decisions.py), on its commit thread:
    the encoding is the one the event's log line and stream entry use
    (StoredEvent.data_json), so data is still encoded once per append, and a refusal
    comes before the event is counted. Nesting that deep needs more than MAX_DEPTH
    brackets, which the encoding counts at C speed; only then is the depth found
    exactly, by orjson's own limit: `data` inside enough lists to leave it MAX_DEPTH
    levels (a whole document, say: ~0.5 ms for 400 KB)."""
    encoded = _encode(data)
    # (Each level opens and closes a bracket: a short encoding cannot nest that deep.)
    if len(encoded) > 2 * MAX_DEPTH and encoded.count(b"[") + encoded.count(b"{") > MAX_DEPTH:
        probe: Any = data
        for _ in range(_WRAPS):
            probe = [probe]
        _encode(probe)
    return encoded


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as e:
        if "Recursion" in str(e):
            raise InvalidInput(
                f"event data nests deeper than {MAX_DEPTH} levels", code="too_deep"
            ) from e
        raise InvalidInput(
            f"event data cannot be stored as JSON: {e}", code="validation_error"
        ) from e


# Not frozen: a frozen dataclass sets each field through object.__setattr__, ~1 us
# more per object, and one of these is made per appended or read event.
@dataclass(slots=True)
class Command:
    account: str
    type: str
    data: dict[str, Any]
    partition: int
    expected_version: int | None = None
    idempotency_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AppendResult:
    """What an append did: where the event went, and what the command found."""

    account: str
    version: int  # the account's version after the command
    partition: int
    offset: int | None  # None when nothing was appended
    event_id: str | None
    ts: str | None
    appended: bool
    duplicate: bool  # a retry answered from the first result
    redis_written: bool
    findings: Findings

    @property
    def position(self) -> dict[str, int] | None:
        if self.offset is None:
            return None
        return {"partition": self.partition, "offset": self.offset}


def _check_data(account: str, kind: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("event data must be a JSON object", code="validation_error")
    if kind == NEGOTIATIONS_SAVED:
        return validate_document(data, account)
    if kind == TRADE_OFFER_UPSERTED:
        return {"offer": validate_offer(data.get("offer"), "offer")}
    if kind == FRIEND_NEGOTIATION_UPSERTED:
        friend = check_steam_id(data.get("friend_steam_id"), "friend_steam_id")
        record = validate_negotiation(data.get("negotiation"), friend)
        return {"friend_steam_id": friend, "negotiation": record}
    if kind == FRIENDS_REMOVED:
        return {"friend_steam_ids": validate_friend_ids(data)}
    # LEGACY_IMPORTED
    source = data.get("source")
    if (
        not isinstance(source, dict)
        or not isinstance(source.get("file"), str)
        or not _SHA256.match(str(source.get("sha256")))
    ):
        raise InvalidInput(
            "source: must be {file: str, sha256: 64 hex digits}", code="validation_error"
        )
    doc = validate_document(data.get("document"), account)
    return {"document": doc, "source": {"file": source["file"], "sha256": source["sha256"]}}


@lru_cache(maxsize=1 << 14)  # ~3 MB at most
def _placed(account: str, partitions: int) -> int:
    """A valid account's partition. Cached: a writer sees the same few thousand accounts
    again and again, and checking and hashing one costs ~1 µs of every append's budget
    (a refusal raises, and so is not cached)."""
    check_steam_id(account, "account")
    return partition_of(account, partitions)


def make_command(
    account: str,
    kind: str,
    data: Any,
    partitions: int,
    expected_version: int | None = None,
    idempotency_key: str | None = None,
    *,
    request_id: str | None = None,
    source: str = "api",
) -> Command:
    """Check a command against the input rules; InvalidInput if it breaks one."""
    if not isinstance(account, str):  # (and an unhashable value never reaches the cache)
        check_steam_id(account, "account")
    partition = _placed(account, partitions)
    if kind not in EVENT_TYPES:
        raise InvalidInput(f"unknown event type: {kind!r}", code="unknown_event_type")
    if expected_version is not None and (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or not 0 <= expected_version <= MAX_VERSION
    ):
        raise InvalidInput(
            f"expected_version must be a whole number from 0 to {MAX_VERSION}",
            code="invalid_expected_version",
        )
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
        raise InvalidInput(
            "Idempotency-Key must be 1 to 200 characters", code="invalid_idempotency_key"
        )
    meta: dict[str, Any] = {}
    if idempotency_key:
        meta["idempotency_key"] = idempotency_key
    if request_id:
        meta["request_id"] = request_id
    meta["source"] = source
    meta["rules"] = RULES
    return Command(
        account=account,
        type=kind,
        data=_check_data(account, kind, data),
        partition=partition,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        meta=meta,
    )


def peek_command(account: str, partitions: int) -> Command:
    """A command that reads the account's version in the log (its partition read up to
    its end, under the lock) and appends nothing."""
    return Command(account=account, type=PEEK, data={}, partition=_placed(account, partitions))
