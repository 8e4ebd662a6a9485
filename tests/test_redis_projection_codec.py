"""The Redis key schema's encoding, without Redis: documents reassemble byte for byte,
reserved field names never collide with the client's, and the partial updates the
scripts get turn one state's meta hash into the next one's."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog.records import RULES, StoredEvent, utc_ts
from projections.fold import Fold, apply, dumps
from projections.redis_codec import (
    COLLECTIONS,
    JSON_FIELDS,
    ORDER,
    POSITION,
    Pairs,
    decode_document,
    decode_record,
    document_json,
    json_arg,
    key_of,
    meta_changes,
    meta_pairs,
    record_pairs,
)
from tests.strategies import documents, event_sequences

ACCOUNT = "76561199027634480"


def _b(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def as_hash(pairs: Pairs) -> dict[bytes, bytes]:
    """What HSET of these pairs leaves in Redis (later fields win, as in HSET)."""
    return {_b(f): _b(v) for f, v in zip(pairs[::2], pairs[1::2], strict=True)}


Hash = dict[bytes, bytes]


def stored(fold: Fold) -> tuple[Hash, Hash, list[tuple[bytes, float]], dict[str, Hash]]:
    """The account's hashes and index as the scripts would leave them."""
    doc = fold.doc
    meta = as_hash([*meta_pairs(doc), "version", str(doc["version"]), POSITION, "0:0"])
    offers = {_b(o["trade_offer_id"]): orjson.dumps(o) for o in doc["trade_offers"] or ()}
    scored = [(_b(oid), float(score)) for oid, score in fold.scores.items()]
    friends = {fid: as_hash(record_pairs(r)) for fid, r in (doc["negotiations"] or {}).items()}
    return meta, offers, scored, friends


def event(kind: str, data: dict[str, Any], version: int) -> StoredEvent:
    return StoredEvent(
        id=f"e{version}", account=ACCOUNT, version=version, partition=0,
        offset=version - 1, type=kind, ts=utc_ts(), data=data, meta={"rules": RULES},
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(documents(ACCOUNT))
def test_whole_documents_reassemble_byte_for_byte(doc: dict[str, Any]) -> None:
    fold = apply(None, event("NegotiationsSaved", doc, 1))
    raw, scores = document_json(*stored(fold))
    assert raw == dumps(fold.doc)
    assert scores == fold.scores
    assert decode_document(*stored(fold)) == (fold.doc, fold.scores)


@settings(max_examples=150, deadline=None)
@given(event_sequences(ACCOUNT, max_size=10))
def test_partial_changes_turn_one_meta_hash_into_the_next(
    commands: list[tuple[str, dict[str, Any]]],
) -> None:
    state: Fold | None = None
    for version, (kind, data) in enumerate(commands, start=1):
        new = apply(state, event(kind, data, version))
        before = as_hash(meta_pairs(state.doc)) if state else {}
        changes = meta_changes(state.doc if state else {}, new.doc)
        if kind in ("NegotiationsSaved", "LegacyImported"):
            state = new
            continue  # replaced whole by save_document
        if changes is None:  # a null collection made one: replaced whole too
            assert state is not None
            assert any(state.doc[c] is None is not new.doc[c] for c in COLLECTIONS)
            state = new
            continue
        assert {**before, **as_hash(changes)} == as_hash(meta_pairs(new.doc))
        state = new


@given(st.text(max_size=12))
def test_client_keys_never_collide_with_reserved_fields(key: str) -> None:
    record = {key: [], ORDER: "o", JSON_FIELDS: {}, POSITION: 1, "_": None, "__": ""}
    stored_hash = as_hash(record_pairs(record))
    assert decode_record(stored_hash) == record
    assert orjson.dumps(decode_record(stored_hash)) == orjson.dumps(record)
    for field in stored_hash:
        name = key_of(field.decode())
        assert name is None or name in record


def test_reserved_fields_are_only_the_bookkeeping_ones() -> None:
    assert key_of(ORDER) is None and key_of(JSON_FIELDS) is None
    assert key_of(POSITION, meta=True) is None and key_of("_position", meta=True) == "position"
    assert key_of(POSITION) == "position"  # a friend record's own: only meta reserves it
    assert key_of("__order") == "_order" and key_of("___") == "__" and key_of("x_") == "x_"
    assert key_of("version") == "version"


def test_a_client_position_never_meets_the_servers() -> None:
    doc = {"position": "top", "_position": 1, "trade_offers": [], "negotiations": {}}
    fold = apply(None, event("NegotiationsSaved", doc, 1))
    meta, offers, scored, friends = stored(fold)
    assert meta[b"position"] == b"0:0"  # the server's, as `stored` sets it
    assert decode_document(meta, offers, scored, friends)[0] == fold.doc


def test_a_client_position_of_the_layout_before_reads_right_and_is_replaced_whole() -> None:
    """Before `position` was the server's field, it held a document's own `position`
    and the server's was `_position`: such a hash still reads as the document, and the
    account's next write replaces it whole (in the layout of now)."""
    doc = {"position": 5, "account_username": "bot", "trade_offers": [], "negotiations": {}}
    fold = apply(None, event("NegotiationsSaved", doc, 1))
    before = {
        b"position": b"5",
        b"account_username": b"bot",
        b"_position": b"0:0",  # the server's, then
        b"version": b"1",
        ORDER.encode(): orjson.dumps(list(fold.doc)),
        JSON_FIELDS.encode(): orjson.dumps(
            [k for k, v in fold.doc.items() if type(v) is not str and k not in COLLECTIONS]
        ),
    }
    for k in fold.doc:  # the server's keys, as strings
        if k not in before and k not in ("position", *COLLECTIONS) and type(fold.doc[k]) is str:
            before[k.encode()] = fold.doc[k].encode()
    assert decode_document(before, {}, [], {})[0] == fold.doc
    upsert = {"offer": {"trade_offer_id": "1"}}
    assert meta_changes(fold.doc, apply(fold, event("TradeOfferUpserted", upsert, 2)).doc) is None


def test_empty_collections_stay_what_they_were() -> None:
    record = {"a": [], "b": {}, "c": "", "d": None, "e": [[]], "f": {"g": []}}
    assert orjson.dumps(decode_record(as_hash(record_pairs(record)))) == orjson.dumps(record)


def test_script_json_arguments_take_only_their_own_size() -> None:
    # A batch's calls hold tens of thousands of these until Redis answers: orjson's own
    # output buffer is 4 KiB or more, however short the JSON.
    values = [{"state": "Accepted", "n": i} for i in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [json_arg(v) for v in values]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held == [orjson.dumps(v) for v in values]
    assert grown < len(values) * 256
