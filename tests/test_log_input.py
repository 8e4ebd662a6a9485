"""Guarantee 8: bad input never reaches the log.

Every invalid command raises InvalidInput (with a readable message and a
machine code) before anything is queued, and leaves the log byte-for-byte as
it was; valid odd-looking input (offer states as numbers, `Unknown(n)`, the
legacy sample documents) is accepted and stored exactly as the rules say.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventlog._exceptions import InvalidInput
from eventlog.commands import MAX_DEPTH, make_command
from eventlog.records import StoredEvent, partition_of
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from eventlog.writer import Writer
from tests.conftest import SAMPLES_DIR
from tests.strategies import OFFER_STATE_NAMES

SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
ACCOUNT = "76561199027634480"
OTHER = "76561199027642399"
FRIEND_A = "76561198123456789"
FRIEND_B = "76561198123561518"
SHA = "ab" * 32
# Other scripts' digits: `str.isdigit` and a regex's `\d` accept them, the rules must not.
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x660 + i) for i in range(10)))
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))

OFFER = "TradeOfferUpserted"
SAVED = "NegotiationsSaved"
FRIEND = "FriendNegotiationUpserted"
REMOVED = "FriendsRemoved"
IMPORTED = "LegacyImported"


def nested(depth: int) -> Any:
    """A JSON value of `depth` nested lists."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def offer(**fields: Any) -> dict[str, Any]:
    return {"offer": {"trade_offer_id": "8189748113", **fields}}


def imported(document: Any, source: Any = None) -> dict[str, Any]:
    return {"document": document, "source": source or {"file": "x.json", "sha256": SHA}}


# (account, event type, data, expected code)
Case = tuple[Any, Any, Any, str]

BAD_ACCOUNTS: dict[str, Any] = {
    "16-digits": "7656119902763448",
    "18-digits": "765611990276344800",
    "below-range": "76561197960265728",
    "above-range": "76561202255233024",
    "zeros": "00000000000000000",
    "non-digit": "7656119902763448a",
    "letters": "abcdefghijklmnopq",
    "empty": "",
    "leading-space": " 76561199027634480",
    "trailing-newline": "76561199027634480\n",
    "arabic-indic-digits": ACCOUNT.translate(ARABIC_INDIC),
    "fullwidth-digits": ACCOUNT.translate(FULLWIDTH),
    "int": 76561199027634480,
    "none": None,
    "list": [ACCOUNT],  # unhashable: refused before the checked accounts' cache
}

CASES: dict[str, Case] = {
    **{f"account-{k}": (v, OFFER, offer(), "invalid_steam_id") for k, v in BAD_ACCOUNTS.items()},
    # Event types.
    "type-unknown": (ACCOUNT, "TradeOfferDeleted", offer(), "unknown_event_type"),
    "type-wrong-case": (ACCOUNT, "tradeofferupserted", offer(), "unknown_event_type"),
    "type-empty": (ACCOUNT, "", offer(), "unknown_event_type"),
    "type-none": (ACCOUNT, None, offer(), "unknown_event_type"),
    # Data not an object, for every type.
    **{
        f"data-{name}-{kind}": (ACCOUNT, kind, value, "validation_error")
        for kind in (OFFER, SAVED, FRIEND, REMOVED, IMPORTED)
        for name, value in (("list", []), ("string", "{}"), ("none", None), ("int", 5))
    },
    # Offers.
    "offer-missing": (ACCOUNT, OFFER, {}, "validation_error"),
    "offer-not-object": (ACCOUNT, OFFER, {"offer": ["8189748113"]}, "validation_error"),
    "offer-without-id": (ACCOUNT, OFFER, {"offer": {"state": "Active"}}, "validation_error"),
    "offer-id-null": (ACCOUNT, OFFER, {"offer": {"trade_offer_id": None}}, "validation_error"),
    **{
        f"offer-id-{name}": (ACCOUNT, OFFER, {"offer": {"trade_offer_id": v}}, "validation_error")
        for name, v in (
            ("int", 8189748113),
            ("float", 8189748113.0),
            ("letters", "abc"),
            ("mixed", "8189748113a"),
            ("empty", ""),
            ("negative", "-1"),
            ("decimal-point", "1.5"),
            ("space", " 8189748113"),
            ("newline", "8189748113\n"),
            ("21-digits", "1" * 21),
            ("non-ascii-digits", "123".translate(ARABIC_INDIC)),
        )
    },
    "offer-friend-not-steamid": (ACCOUNT, OFFER, offer(friend_steam_id="123"), "validation_error"),
    **{
        f"offer-state-{name}": (ACCOUNT, OFFER, offer(state=v), "invalid_state")
        for name, v in (
            ("unknown-name", "Bogus"),
            ("lowercase", "active"),
            ("0", 0),
            ("12", 12),
            ("-1", -1),
            ("float", 3.0),
            ("bool", True),
            ("null", None),
            ("list", ["Active"]),
            ("unknown-x", "Unknown(x)"),
            ("unknown-empty", "Unknown()"),
            ("unknown-lowercase", "unknown(12)"),
            ("unknown-newline", "Unknown(12)\n"),
            ("string-0", "0"),
            ("string-12", "12"),
            ("fullwidth-digit", "3".translate(FULLWIDTH)),
        )
    },
    # Whole documents.
    "doc-account-mismatch": (ACCOUNT, SAVED, {"account_steam_id": OTHER}, "account_mismatch"),
    "doc-account-bad": (ACCOUNT, SAVED, {"account_steam_id": "123"}, "validation_error"),
    "doc-account-int": (ACCOUNT, SAVED, {"account_steam_id": int(ACCOUNT)}, "validation_error"),
    "doc-offers-object": (ACCOUNT, SAVED, {"trade_offers": {}}, "validation_error"),
    "doc-offers-string": (ACCOUNT, SAVED, {"trade_offers": "[]"}, "validation_error"),
    "doc-offers-item-string": (ACCOUNT, SAVED, {"trade_offers": ["1"]}, "validation_error"),
    "doc-offer-id-int": (
        ACCOUNT,
        SAVED,
        {"trade_offers": [{"trade_offer_id": 1}]},
        "validation_error",
    ),
    "doc-offer-without-id": (ACCOUNT, SAVED, {"trade_offers": [{}]}, "validation_error"),
    "doc-offer-bad-state": (
        ACCOUNT,
        SAVED,
        {"trade_offers": [{"trade_offer_id": "1", "state": "Nope"}]},
        "invalid_state",
    ),
    "doc-offer-twice": (
        ACCOUNT,
        SAVED,
        {"trade_offers": [{"trade_offer_id": "1"}, {"trade_offer_id": "1"}]},
        "duplicate_offer",
    ),
    "doc-negotiations-list": (ACCOUNT, SAVED, {"negotiations": []}, "validation_error"),
    # Nested deeper than the log can encode (orjson: 254 levels, the envelope included).
    "doc-too-deep": (ACCOUNT, SAVED, {"x": nested(300)}, "too_deep"),
    "doc-deeper-than-the-limit": (ACCOUNT, SAVED, {"x": nested(200)}, "too_deep"),
    "offer-too-deep": (ACCOUNT, OFFER, offer(items_to_give=nested(300)), "too_deep"),
    "friend-too-deep": (
        ACCOUNT,
        FRIEND,
        {"friend_steam_id": FRIEND_A, "negotiation": {"messages": nested(300)}},
        "too_deep",
    ),
    "import-too-deep": (ACCOUNT, IMPORTED, imported({"x": nested(300)}), "too_deep"),
    "doc-negotiations-string": (ACCOUNT, SAVED, {"negotiations": "{}"}, "validation_error"),
    "doc-negotiations-key-short": (
        ACCOUNT,
        SAVED,
        {"negotiations": {"123": {}}},
        "validation_error",
    ),
    "doc-negotiations-key-name": (
        ACCOUNT,
        SAVED,
        {"negotiations": {"bob": {}}},
        "validation_error",
    ),
    "doc-negotiation-not-object": (
        ACCOUNT,
        SAVED,
        {"negotiations": {FRIEND_A: "awaiting"}},
        "validation_error",
    ),
    "doc-friend-mismatch": (
        ACCOUNT,
        SAVED,
        {"negotiations": {FRIEND_A: {"friend_steam_id": FRIEND_B}}},
        "friend_mismatch",
    ),
    # One friend's record.
    "friend-id-missing": (ACCOUNT, FRIEND, {"negotiation": {}}, "invalid_steam_id"),
    "friend-id-bad": (
        ACCOUNT,
        FRIEND,
        {"friend_steam_id": "123", "negotiation": {}},
        "invalid_steam_id",
    ),
    "friend-id-int": (
        ACCOUNT,
        FRIEND,
        {"friend_steam_id": int(FRIEND_A), "negotiation": {}},
        "invalid_steam_id",
    ),
    "friend-record-missing": (ACCOUNT, FRIEND, {"friend_steam_id": FRIEND_A}, "validation_error"),
    "friend-record-list": (
        ACCOUNT,
        FRIEND,
        {"friend_steam_id": FRIEND_A, "negotiation": []},
        "validation_error",
    ),
    "friend-record-mismatch": (
        ACCOUNT,
        FRIEND,
        {"friend_steam_id": FRIEND_A, "negotiation": {"friend_steam_id": FRIEND_B}},
        "friend_mismatch",
    ),
    "friend-record-id-bad": (
        ACCOUNT,
        FRIEND,
        {"friend_steam_id": FRIEND_A, "negotiation": {"friend_steam_id": "42"}},
        "validation_error",
    ),
    # Removing friends.
    **{
        f"remove-{name}": (ACCOUNT, REMOVED, data, "validation_error")
        for name, data in (
            ("missing", {}),
            ("null", {"friend_steam_ids": None}),
            ("string", {"friend_steam_ids": FRIEND_A}),
            ("object", {"friend_steam_ids": {FRIEND_A: True}}),
            ("bad-id", {"friend_steam_ids": ["123"]}),
            ("int-id", {"friend_steam_ids": [int(FRIEND_A)]}),
            ("one-bad-among-good", {"friend_steam_ids": [FRIEND_A, "x", FRIEND_B]}),
            ("null-id", {"friend_steam_ids": [None]}),
        )
    },
    # Legacy imports.
    "import-no-source": (ACCOUNT, IMPORTED, {"document": {}}, "validation_error"),
    "import-bad-sha": (
        ACCOUNT,
        IMPORTED,
        imported({}, {"file": "x.json", "sha256": "xyz"}),
        "validation_error",
    ),
    "import-doc-missing": (
        ACCOUNT,
        IMPORTED,
        {"source": imported({})["source"]},
        "validation_error",
    ),
    "import-doc-mismatch": (
        ACCOUNT,
        IMPORTED,
        imported({"account_steam_id": OTHER}),
        "account_mismatch",
    ),
    "import-doc-bad-offer": (
        ACCOUNT,
        IMPORTED,
        imported({"trade_offers": [{"trade_offer_id": "x"}]}),
        "validation_error",
    ),
}


def log_bytes(settings: Settings) -> dict[str, bytes]:
    return {
        str(p.relative_to(settings.log_dir)): p.read_bytes()
        for p in sorted(settings.log_dir.rglob("*.jsonl"))
    }


def logged(settings: Settings, account: str = ACCOUNT) -> list[StoredEvent]:
    p = partition_of(account, settings.partitions)
    cursor = Cursor(partition_dir(settings.log_dir, p), p)
    try:
        return [e for e in cursor.read()[0] if e.account == account]
    finally:
        cursor.close()


@pytest.mark.parametrize(("account", "kind", "data", "code"), CASES.values(), ids=CASES.keys())
def test_invalid_input_raises_and_appends_nothing(
    settings: Settings, writer: Writer, account: Any, kind: Any, data: Any, code: str
) -> None:
    writer.append(ACCOUNT, OFFER, offer())  # the log is not empty
    before = log_bytes(settings)
    with pytest.raises(InvalidInput) as caught:
        writer.append(account, kind, data)
    assert caught.value.code == code
    assert str(caught.value) and caught.value.message == str(caught.value)
    # Nothing appended: the next valid append is version 2 right after the first.
    assert log_bytes(settings) == before
    r = writer.append(ACCOUNT, OFFER, offer(state="Accepted"))
    assert (r.version, r.offset) == (2, 1)


def test_accounts_are_checked_every_time_and_placed_by_the_partition_count() -> None:
    # Valid accounts are remembered (make_command's cache); refusals must not be.
    for _ in range(2):
        with pytest.raises(InvalidInput):
            make_command(BAD_ACCOUNTS["above-range"], OFFER, offer(), 16)
    for partitions in (1, 7, 16):
        cmd = make_command(ACCOUNT, OFFER, offer(), partitions)
        assert cmd.partition == partition_of(ACCOUNT, partitions)


@pytest.mark.parametrize(
    ("expected_version", "idempotency_key"),
    [
        *[(bad, None) for bad in (-1, 2**63, True, "1", 1.0)],
        *[(None, bad) for bad in ("", "k" * 201)],
    ],
)
def test_invalid_expected_version_or_key(
    settings: Settings, writer: Writer, expected_version: Any, idempotency_key: Any
) -> None:
    with pytest.raises(InvalidInput):
        writer.append(ACCOUNT, OFFER, offer(), expected_version, idempotency_key)
    assert log_bytes(settings) == {}


def test_invalid_input_names_where(writer: Writer) -> None:
    with pytest.raises(InvalidInput, match=r"offer\.trade_offer_id"):
        writer.append(ACCOUNT, OFFER, {"offer": {"trade_offer_id": 5}})
    with pytest.raises(InvalidInput, match=r"document\.trade_offers\.1\.state"):
        writer.append(
            ACCOUNT,
            SAVED,
            {"trade_offers": [{"trade_offer_id": "1"}, {"trade_offer_id": "2", "state": 99}]},
        )
    with pytest.raises(InvalidInput, match="76561199027642399"):
        writer.append(ACCOUNT, SAVED, {"account_steam_id": OTHER})


@pytest.mark.parametrize("number", range(1, 12))
def test_state_numbers_are_stored_as_names(settings: Settings, writer: Writer, number: int) -> None:
    name = OFFER_STATE_NAMES[number - 1]
    writer.append(ACCOUNT, OFFER, offer(state=number, extra={"kept": [number]}))
    writer.append(ACCOUNT, OFFER, offer(state=name))
    writer.append(
        ACCOUNT,
        SAVED,
        {"trade_offers": [{"trade_offer_id": "1", "state": number, "items": []}]},
    )
    events = logged(settings)
    assert events[0].data == {
        "offer": {"trade_offer_id": "8189748113", "state": name, "extra": {"kept": [number]}}
    }
    assert events[1].data["offer"]["state"] == name
    assert events[2].data == {"trade_offers": [{"trade_offer_id": "1", "state": name, "items": []}]}


@pytest.mark.parametrize("state", ["Unknown(12)", "Unknown(0)", "Unknown(4294967295)"])
def test_unknown_states_are_accepted_as_given(
    settings: Settings, writer: Writer, state: str
) -> None:
    writer.append(ACCOUNT, OFFER, offer(state=state))
    writer.append(ACCOUNT, SAVED, {"trade_offers": [{"trade_offer_id": "7", "state": state}]})
    events = logged(settings)
    assert events[0].data["offer"]["state"] == state
    assert events[1].data["trade_offers"][0]["state"] == state


def test_valid_edge_values_are_accepted(settings: Settings, writer: Writer) -> None:
    lowest, highest = "76561197960265729", "76561202255233023"
    for account in (lowest, highest):
        assert writer.append(account, OFFER, {"offer": {"trade_offer_id": "0"}}).appended
    assert writer.append(ACCOUNT, OFFER, {"offer": {"trade_offer_id": "9" * 20}}).appended
    # Client fields of any type are kept, at every level; friend ids may repeat the key.
    doc: dict[str, Any] = {
        "account_steam_id": ACCOUNT,
        "language": None,
        "our_inventory": [],
        "trade_offers": [],
        "negotiations": {FRIEND_A: {"friend_steam_id": FRIEND_A, "language": {"x": [1, 2.5]}}},
        "extra": {"nested": [[], {}, "", 0, False]},
    }
    writer.append(ACCOUNT, SAVED, doc)
    assert logged(settings)[-1].data == doc
    assert orjson.dumps(logged(settings)[-1].data) == orjson.dumps(doc)


def test_deepest_allowed_document_is_stored_and_read_back(
    settings: Settings, writer: Writer
) -> None:
    # The data object is level 1: its deepest value is at MAX_DEPTH.
    doc = {"x": nested(MAX_DEPTH - 1)}
    assert writer.append(ACCOUNT, SAVED, doc).appended
    event = logged(settings)[-1]
    assert event.data == doc
    # The events route wraps envelopes in two more levels: they still encode.
    orjson.dumps({"events": [event.to_dict()]})


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_legacy_samples_are_stored_unchanged(
    settings: Settings, writer: Writer, sample: Path
) -> None:
    raw = sample.read_bytes()
    account = sample.stem
    document = orjson.loads(raw)
    source = {"file": sample.name, "sha256": hashlib.sha256(raw).hexdigest()}

    saved = writer.append(account, SAVED, orjson.loads(raw))
    done = writer.append(account, IMPORTED, {"document": orjson.loads(raw), "source": source})
    assert saved.appended and done.appended and done.version == 2

    events = logged(settings, account)
    assert [e.type for e in events] == [SAVED, IMPORTED]
    # Equal, and in the same key order, at every level.
    assert events[0].data == document
    assert orjson.dumps(events[0].data) == orjson.dumps(document)
    assert events[1].data == {"document": document, "source": source}
    assert orjson.dumps(events[1].data["document"]) == orjson.dumps(document)

    # Importing the same file again appends nothing.
    again = writer.append(account, IMPORTED, {"document": orjson.loads(raw), "source": source})
    assert not again.appended and again.version == 2


def test_the_checked_encoding_is_the_one_the_log_line_holds(writer: Writer) -> None:
    """The input check's encode of the data is reused for the line: byte for byte what
    encoding the event afresh gives, odd values included."""
    account = "76561199027634480"
    data = {"offer": {"trade_offer_id": "9", "state": "Active", "ü🙂": [1.5e300, -0.0, 2**63 - 1],
                      "deep": [[[{"": None}]]] * 3, "s": "[]"}}  # fmt: skip
    cmd = writer.command(account, "TradeOfferUpserted", data)
    done = writer.submit(cmd).result()
    pdir = partition_dir(writer.settings.log_dir, done.partition)
    cursor = Cursor(pdir, done.partition)
    try:
        [event], _ = cursor.read()
    finally:
        cursor.close()
    line = next(p for p in sorted(pdir.glob("*.jsonl"))).read_bytes()
    assert event.data_json is None and line == event.to_line()


def test_data_too_deep_fails_alone_in_its_batch(settings: Settings, writer: Writer) -> None:
    """Refused as it is decided: the writes committed with it go in (before, the batch's
    encode failed and took every write staged with it down)."""
    futures = [
        writer.submit(writer.command(ACCOUNT, OFFER, offer(trade_offer_id=str(n))))
        for n in range(3)
    ]
    deep = writer.submit(writer.command(ACCOUNT, SAVED, {"x": nested(300)}))
    futures += [writer.submit(writer.command(ACCOUNT, OFFER, offer(trade_offer_id="9")))]
    with pytest.raises(InvalidInput) as caught:
        deep.result()
    assert caught.value.code == "too_deep"
    assert [f.result().version for f in futures] == [1, 2, 3, 4]
    assert [e.version for e in logged(settings)] == [1, 2, 3, 4]
