"""The fold: legacy documents round-trip exactly, merges follow the legacy service,
and any event sequence folds to the same bytes every time, in canonical order."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog._exceptions import ProjectionGap
from eventlog.records import RULES, StoredEvent, utc_ts
from projections import offer_list
from projections.fold import (
    Fold,
    apply,
    default_document,
    dumps,
    fold_all,
    should_apply,
)
from projections.times import offer_score
from tests.conftest import SAMPLES_DIR
from tests.strategies import event_sequences, steam_ids

SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
ACCOUNT = "76561199027634480"
FRIEND_A = "76561198123456789"
FRIEND_B = "76561198123561518"
BASE = datetime(2026, 11, 25, 18, 59, 47, 123000, tzinfo=UTC)


def ts(i: int) -> str:
    return utc_ts(BASE + timedelta(seconds=i))


def ms(i: int) -> int:
    return int((BASE + timedelta(seconds=i)).timestamp()) * 1000 + 123


def event(
    kind: str,
    data: dict[str, Any],
    version: int,
    account: str = ACCOUNT,
    at: int | None = None,
    rules: int = RULES,
) -> StoredEvent:
    return StoredEvent(
        id=f"ev-{account}-{version}",
        account=account,
        version=version,
        partition=0,
        offset=version - 1,
        type=kind,
        ts=ts(version if at is None else at),
        data=data,
        meta={"source": "test", "rules": rules},
    )


def run(commands: Iterable[tuple[str, dict[str, Any]]], account: str = ACCOUNT) -> Fold:
    state: Fold | None = None
    for version, (kind, data) in enumerate(commands, start=1):
        state = apply(state, event(kind, data, version, account))
    assert state is not None
    return state


def offer_ids_of(state: Fold) -> list[str]:
    return [o["trade_offer_id"] for o in state.doc["trade_offers"]]


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


# --- whole documents -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_legacy_import_is_exact(path: Path) -> None:
    sample = load(path)
    source = {"file": path.name, "sha256": "0" * 64}
    state = apply(None, event("LegacyImported", {"document": sample, "source": source}, 1))
    expected = {**sample, "version": 1}
    assert state.doc == expected
    assert dumps(state.doc) == orjson.dumps(expected)  # key order at every level too
    assert state.scores.keys() == {o["trade_offer_id"] for o in sample["trade_offers"]}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_save_of_legacy_document_is_exact(path: Path) -> None:
    sample = load(path)
    state = apply(None, event("NegotiationsSaved", copy.deepcopy(sample), 1))
    # The server owns updated_at and version; everything else comes back as sent.
    expected = {**sample, "updated_at": ts(1), "version": 1}
    assert dumps(state.doc) == orjson.dumps(expected)
    # The bots' cycle: GET, change, POST the whole document back (version included).
    again = apply(state, event("NegotiationsSaved", {**state.doc, "created_at": "later"}, 2))
    assert dumps(again.doc) == orjson.dumps({**expected, "updated_at": ts(2), "version": 2})


def test_sparse_save_gets_server_keys_appended_in_order() -> None:
    state = apply(None, event("NegotiationsSaved", {"zeta": 1, "account_username": None}, 1))
    assert list(state.doc) == [
        "zeta",
        "account_username",
        "account_steam_id",
        "created_at",
        "updated_at",
        "trade_offers",
        "negotiations",
        "version",
    ]
    assert state.doc["created_at"] == state.doc["updated_at"] == ts(1)
    assert state.doc["account_steam_id"] == ACCOUNT
    assert "trade_offers_updated_at" not in state.doc


def test_a_save_that_changes_offers_sets_their_time() -> None:
    offer = {"trade_offer_id": "5", "state": "Active"}
    first = apply(None, event("NegotiationsSaved", {"trade_offers": [offer]}, 1))
    assert first.doc["trade_offers_updated_at"] == ts(1)  # offers, and no time of the client's
    # Saved back unchanged, the time left out: the account's stays.
    same = apply(first, event("NegotiationsSaved", {"trade_offers": [dict(offer)]}, 2))
    assert same.doc["trade_offers_updated_at"] == ts(1)
    # Unchanged, with the client's own value: it comes back as sent.
    sent = {"trade_offers": [dict(offer)], "trade_offers_updated_at": 1755019000}
    kept = apply(same, event("NegotiationsSaved", sent, 3))
    assert kept.doc["trade_offers_updated_at"] == 1755019000
    # An offer's content changed: the server's time, whatever the client sent.
    changed = {**sent, "trade_offers": [{**offer, "state": "Accepted"}]}
    after = apply(kept, event("NegotiationsSaved", changed, 4))
    assert after.doc["trade_offers_updated_at"] == ts(4)
    # Offers removed: a change too.
    emptied = apply(after, event("NegotiationsSaved", {"trade_offers": []}, 5))
    assert emptied.doc["trade_offers_updated_at"] == ts(5)


def test_a_state_history_that_is_not_a_list_is_kept_whole() -> None:
    base = apply(None, event("NegotiationsSaved", {"trade_offers": []}, 1))
    entry = {"state": "Accepted", "timestamp": ts(3)}
    cases = (("abc", ["abc", entry]), (None, [entry]), ({"a": 1}, [{"a": 1}, entry]))
    for history, expected in cases:
        offer = {"trade_offer_id": "5", "state": "Active", "state_history": history}
        added = apply(base, event("TradeOfferUpserted", {"offer": offer}, 2))
        new = {"trade_offer_id": "5", "state": "Accepted"}
        moved = apply(added, event("TradeOfferUpserted", {"offer": new}, 3))
        assert moved.doc["trade_offers"][0]["state_history"] == expected


def test_events_appended_under_the_first_rules_fold_as_they_did() -> None:
    """A log written before RULES 2 replays into the projections it built then."""
    offer = {"trade_offer_id": "5", "state": "Active", "state_history": "ab"}
    saved = {"trade_offers": [offer], "negotiations": None, "trade_offers_updated_at": 7}
    first = apply(None, event("NegotiationsSaved", saved, 1, rules=1))
    assert first.doc["negotiations"] == {} and first.doc["trade_offers_updated_at"] == 7
    again = {**saved, "trade_offers": None}
    second = apply(first, event("NegotiationsSaved", again, 2, rules=1))
    assert second.doc["trade_offers"] == [] and second.doc["trade_offers_updated_at"] == 7
    back = apply(second, event("NegotiationsSaved", saved, 3, rules=1))
    moved = apply(
        back, event("TradeOfferUpserted", {"offer": {**offer, "state": "Accepted"}}, 4, rules=1)
    )
    entry = {"state": "Accepted", "timestamp": ts(4)}
    assert moved.doc["trade_offers"][0]["state_history"] == ["a", "b", entry]
    # The same events under the current rules: the client's values as sent.
    now = apply(None, event("NegotiationsSaved", saved, 1))
    assert now.doc["negotiations"] is None


def test_friends_of_events_appended_under_rules_2_are_sorted_as_they_were() -> None:
    """A log written before RULES 3 replays into the friend order it built then."""
    saved = {"negotiations": {FRIEND_B: {"b": 1}, FRIEND_A: {"a": 1}}}
    old = apply(None, event("NegotiationsSaved", saved, 1, rules=2))
    assert list(old.doc["negotiations"]) == [FRIEND_A, FRIEND_B]
    put = {"friend_steam_id": "76561198000000001", "negotiation": {}}
    older = apply(old, event("FriendNegotiationUpserted", put, 2, rules=2))
    assert list(older.doc["negotiations"]) == ["76561198000000001", FRIEND_A, FRIEND_B]
    now = apply(old, event("FriendNegotiationUpserted", put, 2))
    assert list(now.doc["negotiations"]) == [FRIEND_A, FRIEND_B, "76561198000000001"]


def test_the_writer_appends_under_the_current_rules(tmp_path: Path) -> None:
    from eventlog.settings import load_settings
    from eventlog.writer import Writer

    settings = load_settings(data_dir=tmp_path, redis_url="", partitions=1, fsync="off")
    with Writer(settings) as writer:
        writer.append(ACCOUNT, "NegotiationsSaved", {"trade_offers": None})
    [line] = next((tmp_path / "log" / "p00").glob("*.jsonl")).read_bytes().splitlines()
    assert orjson.loads(line)["meta"]["rules"] == RULES


def test_save_created_at_comes_from_data_only_for_a_new_account() -> None:
    first = apply(None, event("NegotiationsSaved", {"created_at": "2020-01-01T00:00:00Z"}, 1))
    assert first.doc["created_at"] == "2020-01-01T00:00:00Z"
    second = apply(first, event("NegotiationsSaved", {"created_at": "2024-01-01"}, 2))
    assert second.doc["created_at"] == "2020-01-01T00:00:00Z"
    assert next(iter(second.doc)) == "created_at"  # the client's position is kept


def test_whole_document_sorts_offers_keeps_friends_order_and_null_collections() -> None:
    doc = {
        "trade_offers": [
            {"trade_offer_id": "30", "updated_at": "2025-01-01T00:00:02Z"},
            {"trade_offer_id": "10", "updated_at": "1735689601"},  # 2025-01-01T00:00:01Z
            {"trade_offer_id": "9", "updated_at": 1735689601000},
            {"trade_offer_id": "5"},  # no time: scored by the event
        ],
        "negotiations": {FRIEND_B: {"b": 1}, FRIEND_A: {"a": 1}},
    }
    state = apply(None, event("NegotiationsSaved", doc, 1))
    assert offer_ids_of(state) == ["9", "10", "30", "5"]
    assert state.scores["5"] == ms(1)
    assert list(state.doc["negotiations"]) == [FRIEND_B, FRIEND_A]  # as sent
    nulls = apply(state, event("LegacyImported", {"document": {"trade_offers": None}}, 2))
    # The client's null comes back as sent; a collection left out is added empty.
    assert nulls.doc["trade_offers"] is None and nulls.doc["negotiations"] == {}
    assert nulls.scores == {}
    # An offer or a friend then makes a collection of the null; a removal leaves it.
    saved = apply(nulls, event("NegotiationsSaved", {"negotiations": None}, 3))
    assert saved.doc["negotiations"] is None
    removed = apply(saved, event("FriendsRemoved", {"friend_steam_ids": [FRIEND_A]}, 4))
    assert removed.doc["negotiations"] is None
    friend = {"friend_steam_id": FRIEND_A, "negotiation": {"a": 1}}
    befriended = apply(removed, event("FriendNegotiationUpserted", friend, 5))
    assert befriended.doc["negotiations"] == {FRIEND_A: {"a": 1}}
    offer = apply(saved, event("TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}}, 4))
    assert offer_ids_of(offer) == ["1"]


def test_legacy_import_fills_only_missing_times() -> None:
    state = apply(None, event("LegacyImported", {"document": {"updated_at": 5}, "source": {}}, 1))
    assert state.doc == {
        "updated_at": 5,
        "account_steam_id": ACCOUNT,
        "created_at": ts(1),
        "trade_offers": [],
        "negotiations": {},
        "version": 1,
    }
    assert next(iter(state.doc)) == "updated_at"


# --- trade offers ----------------------------------------------------------------------------


def test_new_offer_gets_defaults_on_an_unknown_account() -> None:
    state = apply(None, event("TradeOfferUpserted", {"offer": {"trade_offer_id": "7"}}, 1))
    assert state.doc == {
        **default_document(ACCOUNT, ts(1)),
        "trade_offers": [
            {
                "trade_offer_id": "7",
                "created_at": ts(1),
                "state": "Active",
                "state_history": [{"state": "Active", "timestamp": ts(1)}],
            }
        ],
        "trade_offers_updated_at": ts(1),
        "version": 1,
    }
    assert list(state.doc) == list(default_document(ACCOUNT, ts(1)))
    assert state.scores == {"7": ms(1)}


def test_new_offer_keeps_given_state_time_and_history() -> None:
    offer = {"trade_offer_id": "7", "state": "Accepted", "created_at": "x", "state_history": []}
    state = apply(None, event("TradeOfferUpserted", {"offer": offer}, 1))
    assert state.doc["trade_offers"] == [offer]
    given = {"trade_offer_id": "8", "state": "InEscrow"}
    state = apply(state, event("TradeOfferUpserted", {"offer": given}, 2))
    assert state.doc["trade_offers"][1]["state_history"] == [
        {"state": "InEscrow", "timestamp": ts(2)}
    ]


def test_upsert_merges_and_records_state_changes() -> None:
    first = {"trade_offer_id": "7", "state": "Active", "items_to_give": 2, "message": "hi"}
    state = run(
        [
            ("TradeOfferUpserted", {"offer": first}),
            ("TradeOfferUpserted", {"offer": {"trade_offer_id": "7", "extra": [], "message": ""}}),
            ("TradeOfferUpserted", {"offer": {"trade_offer_id": "7", "state": "Active"}}),
            ("TradeOfferUpserted", {"offer": {"state": "Accepted", "trade_offer_id": "7"}}),
        ]
    )
    (offer,) = state.doc["trade_offers"]
    assert list(offer) == [
        "trade_offer_id",
        "state",
        "items_to_give",
        "message",
        "created_at",
        "state_history",
        "extra",
    ]
    assert offer["message"] == "" and offer["extra"] == [] and offer["items_to_give"] == 2
    assert offer["state"] == "Accepted"
    assert offer["state_history"] == [
        {"state": "Active", "timestamp": ts(1)},
        {"state": "Accepted", "timestamp": ts(4)},
    ]
    assert state.doc["trade_offers_updated_at"] == state.doc["updated_at"] == ts(4)
    assert state.doc["version"] == 4


def test_upsert_state_change_on_offer_without_history() -> None:
    doc = {"trade_offers": [{"trade_offer_id": "7", "state": "Active", "state_history": None}]}
    state = apply(None, event("NegotiationsSaved", doc, 1))
    offer = {"trade_offer_id": "7", "state": "Declined"}
    state = apply(state, event("TradeOfferUpserted", {"offer": offer}, 2))
    assert state.doc["trade_offers"][0]["state_history"] == [
        {"state": "Declined", "timestamp": ts(2)}
    ]


def test_upsert_moves_the_offer_to_its_new_score() -> None:
    offers = [
        {"trade_offer_id": "1", "updated_at": "2025-01-01T00:00:00Z"},
        {"trade_offer_id": "2", "updated_at": "2025-01-02T00:00:00Z"},
        {"trade_offer_id": "3", "updated_at": "2025-01-03T00:00:00.000+00:00"},
    ]
    state = apply(None, event("NegotiationsSaved", {"trade_offers": offers}, 1))
    moved = {"trade_offer_id": "1", "updated_at": "2025-01-02T12:00:00Z"}
    state = apply(state, event("TradeOfferUpserted", {"offer": moved}, 2))
    assert offer_ids_of(state) == ["2", "1", "3"]
    fresh = {"trade_offer_id": "0"}  # no updated_at: the event time, after every 2025 offer
    state = apply(state, event("TradeOfferUpserted", {"offer": fresh}, 3))
    assert offer_ids_of(state) == ["2", "1", "3", "0"]
    assert state.scores["0"] == ms(3)


def test_find_finds_every_offer_of_a_short_or_long_list_and_no_other() -> None:
    # Equal scores, and ids equal as numbers ("7", "07"): the total order decides. Short
    # lists are scanned, long ones bisected.
    offers = [{"trade_offer_id": oid, "updated_at": "2025-01-01T00:00:00Z"} for oid in ("7", "07")]
    offers += [
        {"trade_offer_id": str(i), "updated_at": str(1735689600 + i % 5)} for i in range(10, 110)
    ]
    fold = apply(None, event("NegotiationsSaved", {"trade_offers": offers}, 1))
    for short in (False, True):
        listed = fold.doc["trade_offers"][:20] if short else fold.doc["trade_offers"]
        for offer in listed:
            at = offer_list.find(listed, fold.scores, offer["trade_offer_id"])
            assert at is not None and listed[at] is offer
        assert offer_list.find(listed, fold.scores, "999") is None
    last = fold.doc["trade_offers"][-1]["trade_offer_id"]  # scored, but not among the 20
    assert offer_list.find(fold.doc["trade_offers"][:20], fold.scores, last) is None


MOVED = {"trade_offer_id": "5", "updated_at": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize("others", [1, 60])  # a short list (scanned) and a long one
def test_upserts_of_a_duplicated_id_fold_alike_whatever_the_lists_length(others: int) -> None:
    # Two offers with one id (never validated in, but a log is data) share a score: the
    # first upsert leaves the other copy out of place, and the second must merge into the
    # copy the first one made, as the bisection finds it on a long list.
    twins = [{"trade_offer_id": "5", "updated_at": "2025-01-01T00:00:00Z", "n": n} for n in (1, 2)]
    rest = [
        {"trade_offer_id": str(100 + i), "updated_at": "2025-06-01T00:00:00Z"}
        for i in range(others)
    ]
    state = run(
        [
            ("NegotiationsSaved", {"trade_offers": twins + rest}),
            ("TradeOfferUpserted", {"offer": {**MOVED, "state": "Accepted"}}),
            ("TradeOfferUpserted", {"offer": {**MOVED, "state": "Declined"}}),
        ]
    )
    fives = [o for o in state.doc["trade_offers"] if o["trade_offer_id"] == "5"]
    assert [o["n"] for o in fives] == [2, 1]  # the upserted copy moved to its new score
    assert [h["state"] for h in fives[1]["state_history"]] == ["Accepted", "Declined"]
    assert "state_history" not in fives[0]


def test_upsert_appends_missing_trade_offers_updated_at_at_the_end() -> None:
    sample = load(SAMPLES[-1])  # the sparse legacy file has no trade_offers_updated_at
    assert "trade_offers_updated_at" not in sample
    state = apply(None, event("LegacyImported", {"document": sample, "source": {}}, 1))
    state = apply(state, event("TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}}, 2))
    assert list(state.doc) == [*sample, "version", "trade_offers_updated_at"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-08-12T12:05:00.000Z", 1755000300000),
        ("2025-08-12T12:05:00Z", 1755000300000),
        ("2025-08-12T14:05:00.5+02:00", 1755000300500),
        ("2025-08-12T12:05:00.123456Z", 1755000300123),
        ("2025-08-12T12:05:00", 1755000300000),
        ("1755000300", 1755000300000),
        ("1755000300.123", 1755000300123),
        ("1755000300123", 1755000300123),
        (1755000300, 1755000300000),
        (1755000300.123, 1755000300123),
        (1755000300123, 1755000300123),
        (0, 0),
        (None, -1),
        (True, -1),
        ("", -1),
        ("soon", -1),
        ("2025-13-45T00:00:00Z", -1),
        ("\uff11\uff17\uff15\uff15\uff10\uff10\uff10\uff13\uff10\uff10", -1),  # full-width
        ("9" * 30, -1),
        (10**30, -1),
        ({"at": 1}, -1),
        ([], -1),
    ],
)
def test_offer_score(value: Any, expected: int) -> None:
    assert offer_score({"trade_offer_id": "1", "updated_at": value}, -1) == expected


def test_offer_score_without_updated_at_is_the_fallback() -> None:
    assert offer_score({"trade_offer_id": "1"}, 42) == 42


# --- friends ---------------------------------------------------------------------------------


def test_friend_upsert_replaces_whole_record_where_it_was_and_adds_new_ones_last() -> None:
    record_b = {
        "state": "initiating",
        "language": "en",
        "inventory": [],
        "friend_steam_id": FRIEND_B,
    }
    record_a = {"messages": [], "language": {"code": "de"}, "followUpCount": 0}
    state = run(
        [
            ("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_B, "negotiation": record_b}),
            ("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_A, "negotiation": record_a}),
            ("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_B, "negotiation": {"x": 1}}),
        ]
    )
    assert list(state.doc["negotiations"].items()) == [(FRIEND_B, {"x": 1}), (FRIEND_A, record_a)]
    assert list(state.doc["negotiations"][FRIEND_A]) == ["messages", "language", "followUpCount"]
    assert state.doc["version"] == 3 and state.doc["updated_at"] == ts(3)
    assert state.doc["trade_offers_updated_at"] is None  # friends do not touch offers


def test_friends_removed_deletes_those_present() -> None:
    state = run(
        [
            ("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_A, "negotiation": {}}),
            ("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_B, "negotiation": {}}),
            ("FriendsRemoved", {"friend_steam_ids": [FRIEND_A, "76561198000000000"]}),
        ]
    )
    assert state.doc["negotiations"] == {FRIEND_B: {}}
    assert state.doc["version"] == 3 and state.doc["updated_at"] == ts(3)
    state = apply(state, event("FriendsRemoved", {"friend_steam_ids": [FRIEND_B]}, 4))
    assert state.doc["negotiations"] == {}


# --- versions and errors ---------------------------------------------------------------------


def test_version_gap_raises() -> None:
    with pytest.raises(ProjectionGap) as caught:
        apply(None, event("FriendsRemoved", {"friend_steam_ids": []}, 2))
    assert (caught.value.account, caught.value.held, caught.value.got) == (ACCOUNT, 0, 2)
    state = run([("FriendsRemoved", {"friend_steam_ids": []})])
    with pytest.raises(ProjectionGap):
        apply(state, event("FriendsRemoved", {"friend_steam_ids": []}, 3))
    with pytest.raises(ProjectionGap):  # a repeat is the caller's to skip, never re-applied
        apply(state, event("FriendsRemoved", {"friend_steam_ids": []}, 1))


def test_should_apply_skips_applied_and_raises_on_gap() -> None:
    nothing: dict[str, Any] = {"friend_steam_ids": []}
    assert should_apply(None, event("FriendsRemoved", nothing, 1))
    with pytest.raises(ProjectionGap):
        should_apply(None, event("FriendsRemoved", nothing, 2))
    state = run([("FriendsRemoved", nothing), ("FriendsRemoved", nothing)])
    assert not should_apply(state, event("FriendsRemoved", nothing, 1))
    assert not should_apply(state, event("FriendsRemoved", nothing, 2))
    assert should_apply(state, event("FriendsRemoved", nothing, 3))
    with pytest.raises(ProjectionGap) as caught:
        should_apply(state, event("FriendsRemoved", nothing, 5))
    assert (caught.value.held, caught.value.got) == (2, 5)


def test_unknown_event_type_raises() -> None:
    with pytest.raises(ValueError, match="OfferExploded"):
        apply(None, event("OfferExploded", {}, 1))


def test_fold_all_folds_each_account_in_order() -> None:
    other = "76561199027642399"
    events = [
        event("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_A, "negotiation": {}}, 1),
        event("TradeOfferUpserted", {"offer": {"trade_offer_id": "5"}}, 1, other),
        event("FriendsRemoved", {"friend_steam_ids": [FRIEND_A]}, 2),
    ]
    folds = fold_all(events)
    assert folds.keys() == {ACCOUNT, other}
    assert folds[ACCOUNT].doc["version"] == 2 and folds[ACCOUNT].doc["negotiations"] == {}
    assert offer_ids_of(folds[other]) == ["5"]
    with pytest.raises(ProjectionGap):
        fold_all([*events, events[0]])


# --- purity and open documents ---------------------------------------------------------------


def test_apply_never_mutates_its_input() -> None:
    sample = load(SAMPLES[0])
    state = apply(None, event("LegacyImported", {"document": sample, "source": {}}, 1))
    before, scores = dumps(state.doc), dict(state.scores)
    existing = state.doc["trade_offers"][0]["trade_offer_id"]
    friend = next(iter(state.doc["negotiations"]))
    follow_ups: list[tuple[str, dict[str, Any]]] = [
        ("TradeOfferUpserted", {"offer": {"trade_offer_id": existing, "state": "Expired"}}),
        ("TradeOfferUpserted", {"offer": {"trade_offer_id": "1", "items_to_give": []}}),
        ("FriendNegotiationUpserted", {"friend_steam_id": friend, "negotiation": {"a": []}}),
        ("FriendNegotiationUpserted", {"friend_steam_id": FRIEND_A, "negotiation": {}}),
        ("FriendsRemoved", {"friend_steam_ids": [friend]}),
        ("NegotiationsSaved", {"trade_offers": [], "negotiations": {}}),
        ("LegacyImported", {"document": {}, "source": {}}),
    ]
    for kind, data in follow_ups:
        sent = orjson.dumps(data)
        after = apply(state, event(kind, data, 2))
        assert after.doc is not state.doc and after.doc["version"] == 2
        assert dumps(state.doc) == before and state.scores == scores, kind
        assert orjson.dumps(data) == sent, kind


def test_empty_collections_and_mixed_types_come_back_as_sent() -> None:
    doc = {
        "our_inventory": [],
        "language": None,
        "trade_offers": [
            {"trade_offer_id": "1", "items_to_give": [], "items_to_receive": 3, "meta": {}},
        ],
        "negotiations": {
            FRIEND_A: {"language": "en", "inventory": [], "redirected_to": [], "x": {}},
            FRIEND_B: {"language": {"code": "ru", "confidence": 0.9}, "inventory": None},
        },
    }
    state = apply(None, event("NegotiationsSaved", copy.deepcopy(doc), 1))
    state = apply(
        state,
        event("TradeOfferUpserted", {"offer": {"trade_offer_id": "1", "items_to_give": 2}}, 2),
    )
    offer = state.doc["trade_offers"][0]
    assert offer["items_to_give"] == 2 and offer["items_to_receive"] == 3 and offer["meta"] == {}
    assert state.doc["our_inventory"] == [] and state.doc["language"] is None
    assert state.doc["negotiations"] == doc["negotiations"]
    assert b'"inventory":[],"redirected_to":[],"x":{}' in dumps(state.doc)


# --- properties ------------------------------------------------------------------------------


def _commands() -> st.SearchStrategy[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    return steam_ids().flatmap(lambda a: st.tuples(st.just(a), event_sequences(a)))


def _check_canonical(state: Fold) -> None:
    offers = state.doc["trade_offers"] or []
    ids = [o["trade_offer_id"] for o in offers]
    assert len(set(ids)) == len(ids) and state.scores.keys() == set(ids)
    keys = [(state.scores[i], int(i), i) for i in ids]
    assert keys == sorted(keys)


def _friend_order(order: list[str] | None, kind: str, data: dict[str, Any]) -> list[str] | None:
    """The friends' order a JS object (the legacy service's) gives after a command."""
    if kind in ("NegotiationsSaved", "LegacyImported"):
        doc = data.get("document", data) if kind == "LegacyImported" else data
        negotiations = doc.get("negotiations", {})
        return None if negotiations is None else list(negotiations)
    if kind == "FriendNegotiationUpserted":
        fid = data["friend_steam_id"]
        return [*(order or ()), fid] if fid not in (order or ()) else order
    if kind == "FriendsRemoved" and order is not None:
        return [f for f in order if f not in data["friend_steam_ids"]]
    return order


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_commands())
def test_any_sequence_folds_deterministically_and_canonically(
    drawn: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    account, commands = drawn
    sent = orjson.dumps(commands)
    state: Fold | None = None
    friends: list[str] | None = []
    for version, (kind, data) in enumerate(commands, start=1):
        held = None if state is None else dumps(state.doc)
        new = apply(state, event(kind, data, version, account))
        if state is not None:
            assert dumps(state.doc) == held  # purity at every step
        state = new
        _check_canonical(state)
        friends = _friend_order(friends, kind, data)
        got = state.doc["negotiations"]
        assert (None if got is None else list(got)) == friends
        assert state.doc["version"] == version
    assert state is not None
    again = fold_all(event(k, d, v, account) for v, (k, d) in enumerate(commands, start=1))
    assert dumps(again[account].doc) == dumps(state.doc)
    assert again[account].scores == state.scores
    assert orjson.dumps(commands) == sent  # the events' data is never touched
    assert orjson.loads(dumps(state.doc)) == state.doc
