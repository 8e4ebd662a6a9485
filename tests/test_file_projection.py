"""The file projection: snapshots equal the fold of the log, byte for byte, however
the log is cut into batches, whatever the cache holds, across restarts and
redeliveries; legacy documents round-trip exactly; each account is written once
per batch, before the checkpoint; progress and wake-ups work without polling."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import Writer
from eventlog._exceptions import CheckpointAhead, CorruptSnapshot, ProjectorBusy
from eventlog.notify import APPENDED, PROGRESS, Bell, Ringer, partitions_payload, rung_partitions
from eventlog.records import StoredEvent
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings, load_settings
from projections import atomic, file_writes, fragments, fscalls, snapshot_writes, tags
from projections.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from projections.daemon import run
from projections.durable import covers_log
from projections.file_health import progress
from projections.file_projector import FileProjector, parked
from projections.fold import Fold, apply, dumps, fold_all
from projections.snapshot_encode import Memo, encode
from projections.snapshot_writes import write_snapshots
from projections.snapshots import (
    decode,
    read_document,
    read_document_bytes,
    read_snapshot,
    snapshot_path,
)
from projections.tags import ATTR, read_scores
from tests.conftest import SAMPLES_DIR
from tests.strategies import event_sequences, steam_ids
from tests.test_log_commit_loop import DEADLINE_S, account_in

SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(6)]
FRIEND = "76561198123456789"


def log_events(s: Settings) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    for p in range(s.partitions):
        cursor = Cursor(partition_dir(s.log_dir, p), p)
        try:
            events += cursor.read()[0]
        finally:
            cursor.close()
    return events


def catch_up(s: Settings, batch: int = 5000, **kw: Any) -> FileProjector:
    """Run a projector in burst mode until it has applied everything; return it (closed)."""
    projector = FileProjector(s, **kw)
    run(projector, threading.Event(), until_caught_up=True, batch=batch)
    return projector


def assert_matches_fold(s: Settings, skip: frozenset[str] = frozenset()) -> dict[str, Fold]:
    """Every account's snapshot (and both read paths) equals the fold of the whole log."""
    folds = fold_all(e for e in log_events(s) if e.account not in skip)
    for account, fold in folds.items():
        snap = read_snapshot(s, account)
        assert snap is not None, account
        assert dumps(snap.doc) == dumps(fold.doc), account
        assert snap.scores == fold.scores, account
        doc, version = read_document(s, account)
        assert doc is not None and dumps(doc) == dumps(fold.doc)
        assert version == fold.doc["version"]
        raw, version = read_document_bytes(s, account)
        assert raw is not None and orjson.loads(raw) == fold.doc
    on_disk = {p.stem for p in s.snapshot_dir.glob("*.json")}
    assert on_disk - skip == set(folds)
    return folds


def upsert(offer_id: str, **fields: Any) -> dict[str, Any]:
    return {"offer": {"trade_offer_id": offer_id, **fields}}


# --- the fold and the files agree -----------------------------------------------------------


@st.composite
def logs(draw: st.DrawFn) -> list[tuple[str, str, dict[str, Any]]]:
    """Several accounts' event sequences, interleaved in a random order."""
    accounts = draw(st.lists(steam_ids(), min_size=1, max_size=3, unique=True))
    queues = [[(a, k, d) for k, d in draw(event_sequences(a, max_size=10))] for a in accounts]
    order = draw(st.permutations([i for i, q in enumerate(queues) for _ in q]))
    return [queues[i].pop(0) for i in order]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    log=logs(),
    batch=st.integers(1, 8),
    cache_bytes=st.sampled_from([1, 1 << 30]),
    restarts=st.booleans(),
)
def test_snapshots_equal_the_fold_of_the_log(
    log: list[tuple[str, str, dict[str, Any]]], batch: int, cache_bytes: int, restarts: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(data_dir=tmp, redis_url="", partitions=2, fsync="off")
        with Writer(s) as writer:
            for account, kind, data in log:
                writer.append(account, kind, data)
        if restarts:
            # Small steps with a projector restarted after each: every Fold comes back
            # from its snapshot, extra scores included.
            while True:
                projector = FileProjector(s, cache_bytes=cache_bytes, writers=1)
                n = projector.step(batch)
                projector.close()
                if n == 0:
                    break
        else:
            catch_up(s, batch=batch, cache_bytes=cache_bytes)
        assert_matches_fold(s)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_legacy_sample_round_trips_exactly(
    path: Path, make_settings: Callable[..., Settings]
) -> None:
    s = make_settings()
    raw = path.read_bytes()
    sample = orjson.loads(raw)
    source = {"file": path.name, "sha256": hashlib.sha256(raw).hexdigest()}
    with Writer(s) as writer:
        writer.append(path.stem, "LegacyImported", {"document": sample, "source": source})
    catch_up(s)
    written = snapshot_path(s, path.stem).read_bytes()
    expected = {**sample, "version": 1}
    assert orjson.loads(written) == expected
    # The legacy service's own format: 2-space indent, key order kept, nothing added.
    assert written == orjson.dumps(expected, option=orjson.OPT_INDENT_2)
    assert read_document(s, path.stem) == (expected, 1)


def test_scores_the_document_cannot_give_survive_a_restart(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    account = ACCOUNTS[0]
    with Writer(s) as writer:
        writer.append(account, "TradeOfferUpserted", upsert("5", updated_at="soon"))
        writer.append(account, "TradeOfferUpserted", upsert("7"))
        writer.append(account, "TradeOfferUpserted", upsert("6", updated_at="2020-01-01T00:00:00Z"))
        writer.append(account, "TradeOfferUpserted", upsert("5", state="Accepted"))
    catch_up(s)
    path = snapshot_path(s, account)
    doc, _ = read_document(s, account)
    # The file holds exactly the document; the scores are in its inode's tag.
    assert orjson.loads(path.read_bytes()) == doc and doc is not None and "_tradelog" not in doc
    assert set(read_scores(os.getxattr(path, ATTR), "x")) == {"5", "7"}  # "6": its updated_at
    assert_matches_fold(s)  # read back from the files, scores and all


def test_where_files_take_no_tags_the_scores_go_in_a_reserved_key(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layout before tags, still written where the filesystem takes none, and read in
    snapshots written before them: a reserved last key that readers strip."""
    monkeypatch.setattr(snapshot_writes, "can_tag", lambda directory: False)
    s = make_settings()
    account = ACCOUNTS[0]
    with Writer(s) as writer:
        writer.append(account, "TradeOfferUpserted", upsert("5", updated_at="soon"))
        writer.append(account, "TradeOfferUpserted", upsert("7"))
    catch_up(s)
    path = snapshot_path(s, account)
    assert set(orjson.loads(path.read_bytes())["_tradelog"]["scores"]) == {"5", "7"}
    with pytest.raises(OSError):
        os.getxattr(path, ATTR)
    doc, _ = read_document(s, account)
    assert doc is not None and "_tradelog" not in doc
    assert_matches_fold(s)
    monkeypatch.undo()  # tags again: the next version is tagged, the key gone
    with Writer(s) as writer:
        writer.append(account, "TradeOfferUpserted", upsert("8"))
    catch_up(s)
    assert orjson.loads(path.read_bytes()) == read_document(s, account)[0]
    assert set(read_scores(os.getxattr(path, ATTR), "x")) == {"5", "7", "8"}
    assert_matches_fold(s)


def test_scores_too_many_for_a_tag_go_in_the_reserved_key(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tags, "TAG_MAX", 8)  # any score is too many
    s = make_settings()
    account = ACCOUNTS[0]
    with Writer(s) as writer:
        writer.append(account, "TradeOfferUpserted", upsert("5"))
        writer.append(account, "TradeOfferUpserted", upsert("7"))
    catch_up(s)
    path = snapshot_path(s, account)
    assert set(orjson.loads(path.read_bytes())["_tradelog"]["scores"]) == {"5", "7"}
    doc = read_document(s, account)[0]
    assert doc is not None and "_tradelog" not in doc
    assert {**doc, "_tradelog": ANY} == orjson.loads(path.read_bytes())
    assert_matches_fold(s)


def test_an_account_with_many_unscored_offers_is_still_written(
    make_settings: Callable[..., Settings],
) -> None:
    """More scores than an attribute holds (ext4: one 4 KiB block for all of an inode's):
    the snapshot takes the layout before tags instead of failing the projector."""
    s = make_settings()
    account = ACCOUNTS[0]
    with Writer(s) as writer:
        for n in range(600):
            writer.submit(writer.command(account, "TradeOfferUpserted", upsert(str(1000 + n))))
        writer.append(account, "TradeOfferUpserted", upsert("1"))
    catch_up(s)
    doc, version = read_document(s, account)
    assert doc is not None and version == 601 and len(doc["trade_offers"]) == 601
    assert_matches_fold(s)


def test_a_tag_of_another_version_is_ignored_and_a_reused_inode_loses_its_tag(
    tmp_path: Path,
) -> None:
    """An inode written again without a tag (by a release before tags) keeps the tag of
    its earlier version: readers ignore a tag whose version is not the document's. And
    an inode this release writes without a tag loses the one it had."""
    fold = Fold(
        {"trade_offers": [{"trade_offer_id": "5"}, {"trade_offer_id": "7"}], "version": 2},
        {"5": 1000, "7": 2000},
    )
    untagged, _ = encode(fold, tagged=False)
    stale = tags.make_tag(1, {"5": 1, "7": 1})
    assert stale is not None
    assert decode(untagged, "x", stale).scores == fold.scores  # the reserved key's
    path = tmp_path / "a.json"
    path.write_bytes(untagged)
    os.setxattr(path, ATTR, stale)
    with path.open("r+b") as f:  # reused as a spare or pool inode is
        tags.drop_tag(f.fileno())
        tags.drop_tag(f.fileno())  # (none left: nothing to do)
    with pytest.raises(OSError):
        os.getxattr(path, ATTR)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_memo_encodes_every_version_exactly_as_without_one(data: st.DataObject) -> None:
    """Offers added, merged (and so moved in score order), dropped by a save, with and
    without a readable `updated_at`: the memo's shortcuts never change a byte or a tag."""
    account = data.draw(steam_ids())
    events = data.draw(event_sequences(account, max_size=20))
    memo = Memo()
    state: Fold | None = None
    with pytest.MonkeyPatch.context() as patch:  # every container in parts, however small
        patch.setattr(fragments, "_MIN_ITEMS", 0)
        patch.setattr(fragments, "_MIN_DOC_ITEMS", 0)
        for version, (kind, payload) in enumerate(events, start=1):
            ts = f"2026-11-26T10:{version // 60:02d}:{version % 60:02d}.000Z"
            event = StoredEvent(str(version), account, version, 0, version - 1, kind, ts, payload)
            state = apply(state, event)
            assert encode(state, memo) == encode(state)


def test_a_memo_is_not_misled_by_two_offers_with_one_id() -> None:
    """Validation keeps them out, but a log is data: upserting one of them rescores both."""
    account = "76561198000000001"
    offers = [
        {"trade_offer_id": "1", "updated_at": "bad"},
        {"trade_offer_id": "1", "updated_at": 1000},
    ]
    offers += [{"trade_offer_id": str(i), "updated_at": 2000 + i} for i in range(2, 7)]
    doc = {"account_steam_id": account, "trade_offers": offers, "negotiations": {}}
    ts = "2026-11-26T10:00:00.000Z"
    saved = apply(None, StoredEvent("1", account, 1, 0, 0, "NegotiationsSaved", ts, doc))
    offer = {"trade_offer_id": "1", "updated_at": 1500}
    upserted = apply(
        saved, StoredEvent("2", account, 2, 0, 1, "TradeOfferUpserted", ts, {"offer": offer})
    )
    memo = Memo()
    assert encode(saved, memo) == encode(saved)
    assert encode(upserted, memo) == encode(upserted)


def test_a_snapshots_memo_keeps_only_the_offers_its_document_holds() -> None:
    def fold(ids: range) -> Fold:
        offers = [{"trade_offer_id": str(i), "updated_at": "soon"} for i in ids]
        return Fold({"trade_offers": offers, "version": 1}, {str(i): i for i in ids})

    memo = Memo()
    before, after = fold(range(100)), fold(range(100, 190))  # a whole-document save between
    encode(before, memo)
    assert len(memo.offers) == len(memo.stored) == 100
    # The dropped offers are not kept (with 90 offers, a slack of 2x kept all 100 of them).
    assert encode(after, memo) == encode(after)
    assert [o["trade_offer_id"] for o in memo.offers] == [str(i) for i in range(100, 190)]
    assert len(memo.stored) == 90


def test_a_clients_own_reserved_key_is_kept_in_place(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    account = ACCOUNTS[1]
    with Writer(s) as writer:
        doc = {
            "zeta": 1,
            "_tradelog": {"scores": "mine"},
            "trade_offers": [{"trade_offer_id": "1"}],
        }
        writer.append(account, "NegotiationsSaved", doc)
        writer.append(account, "TradeOfferUpserted", upsert("2", updated_at=17))
    catch_up(s)
    folds = assert_matches_fold(s)
    got, _ = read_document(s, account)
    assert got is not None and list(got)[:2] == ["zeta", "_tradelog"]
    assert got["_tradelog"] == {"scores": "mine"}
    # Such a document takes the layout before tags: no tagged file has the key, so a
    # copy that drops attributes never reads a client's key as the reserved block.
    path = snapshot_path(s, account)
    with pytest.raises(OSError):
        os.getxattr(path, ATTR)
    fold = folds[account]
    for tagged in (True, False):  # and where files take no tags: moved aside, put back
        data, tag = encode(fold, tagged=tagged)
        back = decode(data, "x", tag)
        assert (back.doc, back.scores) == (fold.doc, fold.scores)


def test_a_clients_own_reserved_key_last_survives_a_copy_without_attributes(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    account = ACCOUNTS[1]
    doc = {
        "version": 0, "account_steam_id": account, "created_at": "x", "updated_at": "x",
        "trade_offers": [], "trade_offers_updated_at": "x", "negotiations": {},
        "_tradelog": {"shadow": 1},
    }  # fmt: skip
    with Writer(s) as writer:
        writer.append(account, "NegotiationsSaved", doc)
        writer.append(account, "TradeOfferUpserted", upsert("2"))
    catch_up(s)
    expected, _ = read_document(s, account)
    assert expected is not None and list(expected.items())[-1] == ("_tradelog", {"shadow": 1})
    path = snapshot_path(s, account)
    copy = path.with_name("copy")
    shutil.copyfile(path, copy)  # the bytes only
    os.replace(copy, path)
    assert read_document(s, account) == (expected, 2)
    assert_matches_fold(s)


def test_unknown_and_foreign_files() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(data_dir=tmp, redis_url="", partitions=2)
        assert read_snapshot(s, ACCOUNTS[0]) is None
        assert read_document(s, ACCOUNTS[0]) == (None, 0)
        assert read_checkpoint(s) == Checkpoint()
        s.snapshot_dir.mkdir(parents=True)
        # A legacy file nobody imported is not a projection (the API and verify name it;
        # the projector parks any event of the account but its import).
        shutil.copy(SAMPLES[0], snapshot_path(s, ACCOUNTS[0]))
        assert read_document(s, ACCOUNTS[0]) == (None, 0)
        assert read_snapshot(s, ACCOUNTS[0]) is None
        with pytest.raises(CorruptSnapshot, match="not written by a projector"):
            decode(snapshot_path(s, ACCOUNTS[0]).read_bytes(), "x")
        snapshot_path(s, ACCOUNTS[1]).write_bytes(b'{"version": 3,')
        with pytest.raises(CorruptSnapshot, match="not JSON"):
            read_snapshot(s, ACCOUNTS[1])
        # Damage is never an account nobody wrote (a bot would save that back whole).
        for damaged in (b"{", b'{"account_steam_id": "1", "trade_offers": [], "nego', b"[]"):
            snapshot_path(s, ACCOUNTS[1]).write_bytes(damaged)
            with pytest.raises(CorruptSnapshot):
                read_document(s, ACCOUNTS[1])


# --- batches, restarts and redelivery --------------------------------------------------------


def append_mixed(s: Settings, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with Writer(s) as writer:
        for i in range(count):
            account = rng.choice(ACCOUNTS)
            roll = rng.random()
            if roll < 0.6:
                extra = (
                    {"updated_at": f"2025-01-01T00:00:{i % 60:02d}Z"} if rng.random() < 0.5 else {}
                )
                state = rng.choice(["Active", "Accepted", "Declined"])
                writer.append(
                    account,
                    "TradeOfferUpserted",
                    upsert(str(rng.randrange(9)), state=state, **extra),
                )
            elif roll < 0.9:
                record = {"state": "awaiting_reply", "followUpCount": i}
                writer.append(
                    account,
                    "FriendNegotiationUpserted",
                    {"friend_steam_id": FRIEND, "negotiation": record},
                )
            else:
                writer.append(account, "FriendsRemoved", {"friend_steam_ids": [FRIEND]})


def test_restart_from_an_old_checkpoint_applies_nothing_twice(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    append_mixed(s, 120, seed=1)
    n1 = len(log_events(s))  # a removal of an absent friend appends nothing
    first = catch_up(s, batch=7)
    assert (first.applied, first.skipped) == (n1, 0)
    old = (s.data_dir / "checkpoints" / "file.json").read_bytes()
    append_mixed(s, 80, seed=2)
    total = len(log_events(s))
    second = catch_up(s, batch=7)
    assert (second.applied, second.skipped) == (total - n1, 0)
    before = {a: snapshot_path(s, a).read_bytes() for a in ACCOUNTS}

    (s.data_dir / "checkpoints" / "file.json").write_bytes(old)
    again = catch_up(s, batch=7)
    assert (again.applied, again.skipped) == (0, total - n1)
    (s.data_dir / "checkpoints" / "file.json").unlink()
    scratch = catch_up(s, batch=11, cache_bytes=1)
    assert (scratch.applied, scratch.skipped) == (0, total)
    assert {a: snapshot_path(s, a).read_bytes() for a in ACCOUNTS} == before

    # One lost snapshot is rebuilt from the log; the others are skipped.
    snapshot_path(s, ACCOUNTS[0]).unlink()
    (s.data_dir / "checkpoints" / "file.json").unlink()
    rebuilt = catch_up(s)
    own = sum(1 for e in log_events(s) if e.account == ACCOUNTS[0])
    assert (rebuilt.applied, rebuilt.skipped) == (own, total - own)
    assert {a: snapshot_path(s, a).read_bytes() for a in ACCOUNTS} == before
    assert_matches_fold(s)


def test_each_touched_account_is_written_once_per_batch_then_the_checkpoint(
    make_settings: Callable[..., Settings], installs: list[str]
) -> None:
    s = make_settings()
    append_mixed(s, 300, seed=3)
    installs.clear()  # the writer's own files (its saved command side): not the projector's
    projector = FileProjector(s)
    replaced = installs
    try:
        assert projector.step(10_000) == len(log_events(s))
        assert projector.step(10_000) == 0  # finishes the batch in flight
    finally:
        projector.close()
    counts = Counter(replaced)
    assert {f"{a}.json": 1 for a in ACCOUNTS} | {"file.json": 1} == dict(counts)
    assert replaced[-1] == "file.json"  # the checkpoint comes after every snapshot
    assert read_checkpoint(s).positions == {p: o for p, o in progress(s)["ends"].items()}
    assert_matches_fold(s)


def test_a_ring_naming_partitions_has_them_read_first_and_the_rest_next(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(partitions=4)

    def snapshot(p: int) -> Path:
        return snapshot_path(s, account_in(p, 4))

    with Writer(s) as writer:
        for p in (1, 3):
            writer.append(
                account_in(p, 4), "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}}
            )
    projector = FileProjector(s)
    ringer = Ringer(s.run_dir, APPENDED)
    try:
        ringer.ring(partitions_payload([3]))
        projector.idle(DEADLINE_S)
        assert projector.step(100) == 1  # partition 3's line only
        assert [snapshot(p).exists() for p in (1, 3)] == [False, True]
        assert projector.step(100) == 1  # then every partition's
        assert [snapshot(p).exists() for p in (1, 3)] == [True, True]
    finally:
        ringer.close()
        projector.close()


def test_a_ring_naming_partitions_with_nothing_new_still_finds_the_rest(
    make_settings: Callable[..., Settings],
) -> None:
    """A ring can be lost (a full queue): the partition it would have named is read all
    the same, in the step a ring for another partition wakes."""
    s = make_settings(partitions=4)
    with Writer(s) as writer:
        writer.append(account_in(1, 4), "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    projector = FileProjector(s)
    ringer = Ringer(s.run_dir, APPENDED)
    try:
        ringer.ring(partitions_payload([2]))
        projector.idle(DEADLINE_S)
        assert projector.step(100) == 1
        assert snapshot_path(s, account_in(1, 4)).exists()
    finally:
        ringer.close()
        projector.close()


def test_rings_name_partitions_or_none() -> None:
    assert rung_partitions([partitions_payload([3, 5]), partitions_payload([0])]) == {0, 3, 5}
    assert rung_partitions([b"p2", b"p1"]) == {1, 2}
    assert rung_partitions([b"p2", b"1"]) is None  # a plain ring: read them all
    assert rung_partitions([b"p2", b"px"]) is None
    assert rung_partitions([b"p"]) is None


def test_small_batches_write_an_account_at_most_once_each(
    make_settings: Callable[..., Settings], installs: list[str]
) -> None:
    s = make_settings()
    append_mixed(s, 200, seed=4)
    projector = FileProjector(s)
    steps = 0
    replaced = installs
    try:
        while projector.step(16):
            steps += 1
    finally:
        projector.close()
    counts = Counter(replaced)
    assert counts["file.json"] >= 1 and replaced[-1] == "file.json"
    assert all(counts[f"{a}.json"] <= steps for a in ACCOUNTS)
    assert sum(counts[f"{a}.json"] for a in ACCOUNTS) < len(log_events(s)) // 2  # batching
    assert_matches_fold(s)


@pytest.mark.parametrize("every_s", [0.0, 3600.0])
def test_the_checkpoint_follows_the_batches_in_place_at_most_every_interval(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    installs: list[str],
    every_s: float,
) -> None:
    monkeypatch.setattr(file_writes, "SAVE_EVERY_S", every_s)
    s = make_settings()
    append_mixed(s, 120, seed=8)
    projector = FileProjector(s)
    steps = 0
    try:
        while projector.step(16):
            steps += 1
        # Busy, each step checkpoints the batches before it (or none, at a long interval).
        assert installs.count("file.json") == (steps - 1 if every_s == 0 else 0)
        projector.idle(0.05)  # nothing comes: everything in place is checkpointed
        assert installs[-1] == "file.json"
        assert read_checkpoint(s).positions == projector.positions
    finally:
        projector.close()
    assert read_checkpoint(s).positions == {p: o for p, o in progress(s)["ends"].items()}
    assert_matches_fold(s)


# --- progress, wake-ups, ownership -----------------------------------------------------------


def test_progress_is_rung_and_lag_is_reported(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    append_mixed(s, 40, seed=5)
    bell = Bell(s.run_dir, PROGRESS)
    try:
        catch_up(s)
        rung = [orjson.loads(m) for m in bell.drain()]
    finally:
        bell.close()
    ends = progress(s)["ends"]
    assert rung and rung[-1] == {
        "projector": "file",
        "positions": {str(p): e for p, e in ends.items()},
    }
    state = progress(s)
    assert state["lag_total"] == 0 and state["heartbeat"] and state["pid"] == os.getpid()
    assert parked(s) == []
    with Writer(s) as writer:
        for account in ACCOUNTS[:5]:
            writer.append(account, "TradeOfferUpserted", upsert("99"))
    assert progress(s)["lag_total"] == 5


def test_idle_wakes_when_a_writer_appends(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    projector = FileProjector(s)
    try:
        assert projector.step(100) == 0
        with Writer(s) as writer:
            writer.append(ACCOUNTS[0], "TradeOfferUpserted", upsert("1"))
        started = time.monotonic()
        projector.idle(30)  # the writer's ring is waiting: returns at once
        assert time.monotonic() - started < 10
        assert projector.step(100) == 1
    finally:
        projector.close()
    assert_matches_fold(s)


def test_one_projector_per_data_dir_and_a_checkpoint_past_the_log_stops(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    projector = FileProjector(s)
    try:
        with pytest.raises(ProjectorBusy):
            FileProjector(s)
    finally:
        projector.close()
    write_checkpoint(s, Checkpoint({0: 5}))
    with pytest.raises(CheckpointAhead, match="partition 0"):
        FileProjector(s)
    FileProjector(make_settings(data_dir=s.data_dir / "other")).close()


def test_a_step_reads_a_bounded_number_of_bytes(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(partitions=1, fsync="off")
    big = {"our_inventory": ["x" * 1000] * 100}  # ~100 KB per whole-document event
    with Writer(s) as writer:
        for i in range(60):
            writer.append(ACCOUNTS[i % 3], "NegotiationsSaved", {**big, "n": i})
    monkeypatch.setattr("projections.file_tail.STEP_BYTES", 1 << 20)
    projector = FileProjector(s)
    try:
        sizes = []
        while n := projector.step(10_000):
            sizes.append(n)
    finally:
        projector.close()
    assert sum(sizes) == 60 and len(sizes) >= 2 and max(sizes) < 60
    assert_matches_fold(s)


def test_a_step_stops_once_the_documents_it_touched_pass_a_bound(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(partitions=4, fsync="off")
    accounts = [account_in(p, 4) for p in range(4)]  # one a partition: a read chunk each
    doc = {"our_inventory": ["x" * 1000] * 20}  # ~20 KB snapshots
    with Writer(s) as writer:
        for account in accounts:
            writer.append(account, "NegotiationsSaved", doc)
    catch_up(s).close()
    with Writer(s) as writer:
        for i in range(12):
            writer.append(accounts[i % 4], "NegotiationsSaved", {**doc, "n": i})
    # Two of those documents reach the bound: a step folds at most two partitions' chunks.
    monkeypatch.setattr("projections.file_projector.STEP_DIRTY_BYTES", 30_000)
    projector = FileProjector(s)
    try:
        touched = []
        while projector.step(10_000):
            touched.append(len(projector.writes.flight.folds if projector.writes.flight else ()))
    finally:
        projector.close()
    assert touched == [2, 2]
    assert_matches_fold(s)


def test_a_step_that_ends_mid_chunk_holds_no_events_read_past_it(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(partitions=2, fsync="off")
    append_mixed(s, 90, seed=11)
    projector = FileProjector(s, writers=1)
    try:
        taken = 0
        while n := projector.step(7):  # the whole log fits one read chunk: cut it up
            taken += n
            # Each cursor stands right after the last event handed out (the batch in
            # flight ends there): the rest of its chunk is read again later, never
            # parsed and kept between steps.
            folded = projector.writes.batch().positions
            assert folded == {c.partition: c.next_offset for c in projector.tail.cursors}
        assert taken == len(log_events(s))
    finally:
        projector.close()
    assert_matches_fold(s)


def test_a_cursor_reads_at_most_most_events_and_goes_on_after_them(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(partitions=1, fsync="off")
    append_mixed(s, 25, seed=3)
    cursor = Cursor(partition_dir(s.log_dir, 0), 0)
    try:
        got: list[StoredEvent] = []
        while events := cursor.read(limit=1, most=4)[0]:
            assert len(events) <= 4
            assert cursor.next_offset == events[-1].offset + 1
            got += events
    finally:
        cursor.close()
    assert [e.offset for e in got] == list(range(25))
    assert [e.to_line() for e in got] == [e.to_line() for e in log_events(s)]


@pytest.mark.parametrize("pool_files", [2, 64], ids=["by-the-pool", "in-the-loop"])
def test_a_batch_of_many_snapshots_is_synced_once_before_any_is_renamed(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    installs: list[str],
    pool_files: int,
) -> None:
    monkeypatch.setattr(file_writes, "POOL_FILES", pool_files)
    assert fscalls.available()  # Linux: the one-flush path is the one taken
    s = make_settings(fsync="always")
    append_mixed(s, 120, seed=5)
    installs.clear()  # the writer's own files (its saved command side): not the projector's
    steps = installs
    real_syncfs = fscalls.syncfs

    def syncing(directory: Path, fd: int | None = None) -> None:
        steps.append("syncfs")
        real_syncfs(directory, fd)

    monkeypatch.setattr(fscalls, "syncfs", syncing)
    projector = FileProjector(s)
    try:
        assert projector.step(10_000) == len(log_events(s))
        assert projector.step(10_000) == 0
    finally:
        projector.close()
    snapshots = [name for name in steps if name not in ("syncfs", "file.json")]
    assert sorted(snapshots) == sorted(f"{a}.json" for a in ACCOUNTS)
    assert steps[0] == "syncfs" and steps.count("syncfs") == 1 and steps[-1] == "file.json"
    assert not [p for p in s.snapshot_dir.iterdir() if p.name.endswith(".tmp")]
    assert_matches_fold(s)

    with pytest.raises(OSError):
        real_syncfs(s.snapshot_dir / "missing")


def test_snapshots_rewritten_through_their_spares_stay_exact(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, installs: list[str]
) -> None:
    monkeypatch.setattr(atomic, "SPARE_REST_S", 0.0)  # spares are reused as soon as synced
    monkeypatch.setattr(atomic, "_TICK_S", 0.0)  # (with no margin for a coarse clock)
    s = make_settings()
    append_mixed(s, 240, seed=6)
    projector = FileProjector(s)
    inodes: dict[str, set[int]] = {a: set() for a in ACCOUNTS}
    try:
        while projector.step(7):
            for a in ACCOUNTS:
                with contextlib.suppress(FileNotFoundError):
                    inodes[a].add(snapshot_path(s, a).stat().st_ino)
    finally:
        projector.close()
    assert_matches_fold(s)
    names = os.listdir(s.snapshot_dir)
    assert sorted(n for n in names if n.endswith(".spare")) == sorted(
        f".{a}.json.spare" for a in ACCOUNTS
    )
    assert not [n for n in names if n.endswith(".tmp")]
    # Spares and pool inodes were overwritten (their inodes came back in place) once
    # their exchange was synced: far fewer inodes than writes.
    seen = set().union(*inodes.values())
    assert len(seen) < len(installs) // 3


def test_one_off_snapshot_writes_leave_no_spare_temp_or_pool_file(
    make_settings: Callable[..., Settings],
) -> None:
    """`write_snapshots` (replay of an account, a parked account applied again) writes
    each account once: nothing is kept for a next write, not even in the projector's
    own process."""
    s = make_settings()
    append_mixed(s, 60, seed=3)
    catch_up(s)
    before = sorted(os.listdir(s.snapshot_dir))
    folds = fold_all(log_events(s))
    for _ in range(2):
        write_snapshots(s, folds.items())
    assert sorted(os.listdir(s.snapshot_dir)) == before
    assert not [n for n in before if n.startswith(".pool-") or n.endswith(".tmp")]
    assert_matches_fold(s)


def test_a_partition_on_another_filesystem_is_synced_on_its_own(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings()
    append_mixed(s, 20, seed=4)
    s.snapshot_dir.mkdir(parents=True, exist_ok=True)
    assert covers_log(s) is True
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))  # tmpfs: another filesystem
    try:
        moved = partition_dir(s.log_dir, 1)
        shutil.copytree(moved, elsewhere / "p", dirs_exist_ok=True)
        shutil.rmtree(moved)
        moved.symlink_to(elsewhere / "p")
        assert covers_log(s) is False
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.parametrize("beside", [True, False], ids=["log-beside", "log-elsewhere"])
def test_a_snapshot_is_put_in_place_only_once_the_lines_it_folded_are_durable(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, beside: bool
) -> None:
    """Writers ring the projector before they sync: the projector syncs the segment it
    read before any snapshot of it is installed, one file (its own fsync) or several
    (their syncfs, which covers the log's lines too when it is on the same filesystem)."""
    s = make_settings(fsync="always", redis_url="")
    order: list[str] = []
    real_fdatasync, real_install, real_syncfs = os.fdatasync, file_writes.install, fscalls.syncfs

    def fdatasync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
            order.append("log")
        real_fdatasync(fd)

    def install(staged: Any) -> None:
        order.append("install")
        real_install(staged)

    def syncfs(directory: Path, fd: int | None = None) -> None:
        order.append("syncfs")
        real_syncfs(directory, fd)

    assert covers_log(s) is None  # the log is not there yet: asked again later
    monkeypatch.setattr(file_writes, "covers_log", lambda settings: beside)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(file_writes, "install", install)
    monkeypatch.setattr(fscalls, "syncfs", syncfs)
    with Writer(s) as w:
        w.append(ACCOUNTS[0], "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    order.clear()  # the writer's own syncs
    catch_up(s)
    assert order == ["log", "install"]
    s.snapshot_dir.mkdir(parents=True, exist_ok=True)
    assert covers_log(s) is True  # (here; each case is made by the patch above)
    with Writer(s) as w:
        for account in ACCOUNTS[:3]:
            w.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": "2"}})
    order.clear()
    catch_up(s)
    synced = ["syncfs"] if beside else ["syncfs", "log"]
    assert order[: len(synced)] == synced and order.count("install") == 3
    assert "log" not in order[-3:]


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_every_segment_is_durable_to_its_end_before_a_snapshot_shows_it(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """Small segments, so appends roll from one to the next: a segment is synced before its
    writer leaves it (with fsync=batch its last lines would otherwise wait for a sync that
    goes to the new segment only), and every line a snapshot shows is durable."""
    s = make_settings(fsync=policy, redis_url="", partitions=1, segment_bytes=4096)
    synced: dict[str, int] = {}
    real_fdatasync, real_fsync, real_install = os.fdatasync, os.fsync, file_writes.install

    def note(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(".jsonl"):
            synced[path] = os.fstat(fd).st_size

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        note(fd)

    def fsync(fd: int) -> None:
        real_fsync(fd)
        note(fd)

    unsynced: list[str] = []

    def install(staged: Any) -> None:
        for seg in sorted((s.log_dir / "p00").glob("*.jsonl")):
            if synced.get(str(seg), 0) < seg.stat().st_size:
                unsynced.append(f"{seg.name}: {synced.get(str(seg), 0)} of {seg.stat().st_size}")
        real_install(staged)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(file_writes, "install", install)
    with Writer(s) as w:
        for i in range(40):
            w.append(ACCOUNTS[i % 2], "TradeOfferUpserted", {"offer": {"trade_offer_id": str(i)}})
    assert len(list((s.log_dir / "p00").glob("*.jsonl"))) >= 3
    catch_up(s)
    assert unsynced == []
