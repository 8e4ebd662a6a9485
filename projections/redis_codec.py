"""An account document <-> the DESIGN's Redis key schema, byte for byte.

The meta hash holds every top-level field but `trade_offers` and `negotiations`
(unless the client set one to null: that null is a field of it, as sent);
a friend hash holds one friend's record, a field per top-level key. In both,
strings are stored as they are and every other value as orjson JSON, and two
reserved fields make the round trip exact: `_order` (a JSON array of the keys in
document order, the collections included) and `_json` (a JSON array of the keys
whose value is JSON); the meta hash also keeps `_friends` (a JSON array of the
friend ids in document order, since the friends index is a set; a hash without
it, of the layout before, lists them sorted). A client key starting with "_" is
stored with one more "_" in front, so it can never collide with a reserved field
(`_order` -> `__order`).
The meta hash's `version` and `position` (the account's last event: "p:offset")
are the server's, as DESIGN names them: a client's own top-level `position` is
stored as `_position` (its `version` is the server's anyway), with `_layout` set
to say so. Without `_layout` the hash is of the layout before, where the server's
was `_position` and the client's `position`: read as it is, and replaced whole at
the account's next write (meta_changes).
Offers are stored as the exact bytes of `orjson.dumps(offer)`.

Nothing here talks to Redis: the reader and the scripts' callers use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from .offer_list import sort_key

__all__ = [
    "COLLECTIONS",
    "FRIENDS",
    "JSON_FIELDS",
    "ORDER",
    "POSITION",
    "VERSION",
    "Pairs",
    "decode_document",
    "decode_record",
    "document_json",
    "json_arg",
    "key_of",
    "meta_changes",
    "meta_pairs",
    "record_pairs",
]

ORDER = "_order"
JSON_FIELDS = "_json"
FRIENDS = "_friends"
POSITION = "position"
VERSION = "version"
COLLECTIONS = ("trade_offers", "negotiations")
# The scripts set `version` themselves, from the version they compare-and-set.
_NOT_IN_META = frozenset((*COLLECTIONS, VERSION))
_ESCAPED_POSITION = "_" + POSITION
LAYOUT = "_layout"  # in a meta hash whose document has a `position` of its own
_LAYOUT_B = LAYOUT.encode()
_NULLABLE = frozenset(c.encode() for c in COLLECTIONS)
_ORDER_B = ORDER.encode()
_JSON_B = JSON_FIELDS.encode()
_FRIENDS_B = FRIENDS.encode()
_MISSING: Any = object()

Pairs = list[str | bytes]  # field, value, field, value … as the scripts take them


def json_arg(value: Any) -> bytes:
    """`orjson.dumps(value)` in a buffer of its own size, for a script's arguments.

    orjson (3.12 on) returns its whole output buffer, 4 KiB at least and rounded up
    to a power of two, whatever the JSON's length. A Redis projector batch holds tens
    of thousands of these until Redis answers, two batches at a time: as they came,
    they were a third of its peak (bench memory: 284 -> 182 MiB with copies).
    """
    return bytes(memoryview(orjson.dumps(value)))


def _field(key: str) -> str:
    return "_" + key if key[:1] == "_" else key


def _meta_field(key: str) -> str:
    return "_" + key if key[:1] == "_" or key == POSITION else key


def key_of(field: str, meta: bool = False) -> str | None:
    """The document key a hash field stores (of the meta hash if `meta`); None for a
    reserved field."""
    if field[:1] != "_":
        return None if meta and field == POSITION else field
    if meta and field == _ESCAPED_POSITION:
        return POSITION
    return field[1:] if field[:2] == "__" else None


def record_pairs(record: dict[str, Any]) -> Pairs:
    """A friend record as the whole content of its hash."""
    pairs: Pairs = []
    json_keys: list[str] = []
    for key, value in record.items():
        if type(value) is str:
            pairs += (_field(key), value)
        else:
            pairs += (_field(key), json_arg(value))
            json_keys.append(key)
    pairs += (ORDER, json_arg(list(record)), JSON_FIELDS, json_arg(json_keys))
    return pairs


def meta_pairs(doc: dict[str, Any]) -> Pairs:
    """The meta hash of a whole document (without `version` and `position`)."""
    pairs: Pairs = []
    json_keys: list[str] = []
    for key, value in doc.items():
        if key in _NOT_IN_META and (value is not None or key == VERSION):
            if key == VERSION:
                json_keys.append(key)
            continue
        if type(value) is str:
            pairs += (_meta_field(key), value)
        else:
            pairs += (_meta_field(key), json_arg(value))
            json_keys.append(key)
    pairs += (ORDER, json_arg(list(doc)), JSON_FIELDS, json_arg(json_keys))
    if isinstance(doc.get("negotiations"), dict):
        pairs += (FRIENDS, json_arg(list(doc["negotiations"])))
    if POSITION in doc:
        pairs += (LAYOUT, "2")
    return pairs


def meta_changes(old: dict[str, Any], new: dict[str, Any]) -> Pairs | None:
    """The meta fields to set to turn `old`'s meta hash into `new`'s.

    The fold shares unchanged values between states, so identity finds what an
    event changed without encoding the rest (an inventory can be large). None
    when a key went away: only a whole-document replace can express that.
    """
    if POSITION in new:  # the hash may be of the layout before (see the module doc)
        return None
    pairs: Pairs = []
    json_changed = False
    for key, value in new.items():
        was = old.get(key, _MISSING)
        if key in COLLECTIONS and (value is None) != (was is None):
            return None  # a collection turned null, or null no longer: replaced whole
        if key in _NOT_IN_META:
            continue
        if was is value:
            continue
        is_json = type(value) is not str
        pairs += (_meta_field(key), json_arg(value) if is_json else value)
        if was is _MISSING or (type(was) is not str) != is_json:
            json_changed = True
    friends, had = new.get("negotiations"), old.get("negotiations")
    if (
        isinstance(friends, dict)
        and friends is not had
        and (had is None or list(friends) != list(had))
    ):
        pairs += (FRIENDS, json_arg(list(friends)))  # a friend came or went
    if len(new) != len(old) or list(new) != list(old):
        if not old.keys() <= new.keys():
            return None
        pairs += (ORDER, json_arg(list(new)))
        json_changed = True
    if json_changed:
        json_keys = [
            k for k, v in new.items() if type(v) is not str and (v is None or k not in COLLECTIONS)
        ]
        pairs += (JSON_FIELDS, json_arg(json_keys))
    return pairs


def _object(raw: dict[bytes, bytes], collections: dict[str, bytes] | None = None) -> bytes:
    """A hash's JSON object, built from the stored bytes: strings are quoted, JSON
    values are taken as they are (orjson Fragments), so nothing is parsed here and the
    result is the bytes `orjson.dumps` gives for the original object. The meta hash is
    the one read with its collections (see _meta_field)."""
    json_keys = frozenset(orjson.loads(raw[_JSON_B]))
    meta = collections is not None and _LAYOUT_B in raw  # a client position is escaped
    collections = collections or {}
    fragment = orjson.Fragment
    obj: dict[str, Any] = {}
    for key in orjson.loads(raw[_ORDER_B]):
        if key in collections:
            obj[key] = fragment(collections[key])
            continue
        # As _field names it, inline: this runs for every field of every hash read.
        escaped = key[:1] == "_" or (meta and key == POSITION)
        value = raw[b"_" + key.encode() if escaped else key.encode()]
        obj[key] = fragment(value) if key in json_keys else value.decode()
    # One dumps call: quoting every key and string in C, not a join per field here.
    return orjson.dumps(obj)


def decode_record(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """A friend record from its hash."""
    record: dict[str, Any] = orjson.loads(_object(raw))
    return record


def document_json(
    meta: dict[bytes, bytes],
    offers: dict[bytes, bytes],
    scored: Iterable[tuple[bytes, float]],
    friends: dict[str, dict[bytes, bytes]],
) -> tuple[bytes, dict[str, int]]:
    """The document's JSON (exactly `orjson.dumps(doc)`) and its offer scores, from an
    account's hashes and index, without parsing what they hold.

    Raises KeyError/ValueError when the hashes are not a complete account.
    """
    scores = {oid.decode(): int(score) for oid, score in scored}
    ids = sorted(scores, key=lambda oid: sort_key(oid, scores[oid]))
    order = _friend_order(meta.get(_FRIENDS_B), friends)
    negotiations = (orjson.dumps(fid) + b":" + _object(friends[fid]) for fid in order)
    collections = {
        "trade_offers": b"[" + b",".join([offers[oid.encode()] for oid in ids]) + b"]",
        "negotiations": b"{" + b",".join(negotiations) + b"}",
    }
    for key in _NULLABLE.intersection(meta):  # the client's null, kept in the meta hash
        collections[key.decode()] = meta[key]
    return _object(meta, collections), scores


def _friend_order(listed: bytes | None, friends: dict[str, Any]) -> list[str]:
    """The friend ids in document order: as `_friends` lists them, then any it does not
    list (none, but in a hash of the layout before, which lists none) sorted."""
    order = [f for f in dict.fromkeys(orjson.loads(listed)) if f in friends] if listed else []
    if len(order) != len(friends):
        order += sorted(friends.keys() - set(order))
    return order


def decode_document(
    meta: dict[bytes, bytes],
    offers: dict[bytes, bytes],
    scored: Iterable[tuple[bytes, float]],
    friends: dict[str, dict[bytes, bytes]],
) -> tuple[dict[str, Any], dict[str, int]]:
    """The document and its offer scores from an account's hashes and index."""
    raw, scores = document_json(meta, offers, scored, friends)
    doc: dict[str, Any] = orjson.loads(raw)
    return doc, scores
