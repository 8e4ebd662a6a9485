"""The saved command side: a writer starts from it instead of reading its partition
from the beginning, decides exactly as after a full read, and ignores it whenever
the log no longer holds what it names."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventlog import state_file, state_saves
from eventlog._exceptions import CorruptLog
from eventlog.commands import AppendResult
from eventlog.records import partition_of
from eventlog.segments import Cursor, partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from eventlog.state import PartitionState
from eventlog.writer import Writer

ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(5)]
FRIENDS = [str(76561198123456789 + i) for i in range(4)]
P = 0  # every test account's partition with 1 partition


@pytest.fixture
def settings1(make_settings: object) -> Settings:
    return make_settings(partitions=1, fsync="off")  # type: ignore[operator, no-any-return]


def _pdir(s: Settings) -> Path:
    return partition_dir(s.log_dir, P)


def _mixed(writer: Writer, rng: random.Random, count: int, tag: str) -> list[AppendResult]:
    out = []
    for n in range(count):
        account = rng.choice(ACCOUNTS)
        roll = rng.random()
        key = f"{tag}-{n}" if n % 3 == 0 else None
        if roll < 0.6:
            state = rng.choice(("Active", "Accepted", "Declined"))
            offer = {"trade_offer_id": str(rng.randrange(12)), "state": state}
            out.append(writer.append(account, "TradeOfferUpserted", {"offer": offer}, None, key))
        elif roll < 0.8:
            fid = rng.choice(FRIENDS)
            data = {"friend_steam_id": fid, "negotiation": {"state": rng.choice("xy")}}
            out.append(writer.append(account, "FriendNegotiationUpserted", data, None, key))
        elif roll < 0.95:
            data = {"friend_steam_ids": rng.sample(FRIENDS, 2)}
            out.append(writer.append(account, "FriendsRemoved", data, None, key))
        else:
            offer = {"trade_offer_id": "1", "state": "Active"}
            doc = {"trade_offers": [offer], "negotiations": {}}
            out.append(writer.append(account, "NegotiationsSaved", doc, None, key))
    return out


def _full_read(s: Settings) -> PartitionState:
    state = PartitionState()
    cursor = Cursor(_pdir(s), P)
    try:
        for event in cursor.read()[0]:
            state.observe(event)
    finally:
        cursor.close()
    return state


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each read of a writer's partition file returned, in order: the
    warm-up's read ahead first, then each catch-up under the lock."""
    from eventlog.filelog import PartitionFile

    counts: list[int] = []
    for name in ("read_ahead", "catch_up"):
        real = getattr(PartitionFile, name)

        def counting(self: PartitionFile, real: Any = real) -> list[object]:
            events = real(self)
            counts.append(len(events))
            return events  # type: ignore[no-any-return]

        monkeypatch.setattr(PartitionFile, name, counting)
    return counts


def test_a_restarted_writer_reads_only_what_follows_the_saved_state(
    settings1: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {partition_of(a, 1) for a in ACCOUNTS} == {P}
    rng = random.Random(3)
    with Writer(settings1) as writer:
        first = _mixed(writer, rng, 300, "a")
    assert (_pdir(settings1) / state_file.NAME).exists()  # saved at a clean close
    with monkeypatch.context() as m:  # another process appends after the save, then dies
        m.setattr(state_saves, "save_state", lambda *args: None)
        with Writer(settings1) as other:
            between = sum(r.appended for r in _mixed(other, random.Random(4), 20, "b"))
    reads = _reads(monkeypatch)
    with Writer(settings1) as restarted:
        offer = {"offer": {"trade_offer_id": "9"}}
        retry = restarted.append(first[0].account, "TradeOfferUpserted", offer, None, "a-0")
        assert retry.duplicate and retry.event_id == first[0].event_id
        assert retry.findings == first[0].findings
        rest = _mixed(restarted, random.Random(5), 50, "c")
        held = restarted._parts[P].state  # what it decided from
        assert held.accounts == _full_read(settings1).accounts
        assert list(held.receipts.items()) == list(_full_read(settings1).receipts.items())
    assert 0 < reads[0] == between  # only the other process's events, not those before them
    assert any(r.appended for r in rest)
    cursor = Cursor(_pdir(settings1), P)
    versions: dict[str, list[int]] = {}
    for event in cursor.read()[0]:
        versions.setdefault(event.account, []).append(event.version)
    cursor.close()
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())  # no gap, no repeat
    # Saved again at close, its checksum carried on from the loaded one: valid as well.
    assert state_file.load_state(_pdir(settings1)) is not None
    reads.clear()
    with Writer(settings1) as again:
        _mixed(again, random.Random(10), 5, "d")
    assert reads[0] == 0


def test_a_line_damaged_before_the_saved_position_is_still_found_and_named(
    settings1: Settings,
) -> None:
    with Writer(settings1) as writer:
        _mixed(writer, random.Random(8), 60, "a")
    pdir = _pdir(settings1)
    seg = segment_path(pdir, segment_bases(pdir)[-1])
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[10] = b"x" * (len(lines[10]) - 1) + b"\n"  # as long as it was: only the bytes differ
    seg.write_bytes(b"".join(lines))
    assert state_file.load_state(pdir) is None
    with Writer(settings1) as restarted, pytest.raises(CorruptLog) as caught:
        _mixed(restarted, random.Random(9), 1, "b")
    assert caught.value.line == 11 and str(seg) in str(caught.value)


@pytest.mark.parametrize("damage", ["cut", "rewritten", "garbage", "other-format", "wrong-field"])
def test_a_saved_state_the_log_does_not_hold_is_ignored(
    settings1: Settings, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    with Writer(settings1) as writer:
        logged = sum(r.appended for r in _mixed(writer, random.Random(6), 120, "a"))
    pdir = _pdir(settings1)
    seg = segment_path(pdir, segment_bases(pdir)[-1])
    lines = seg.read_bytes().splitlines(keepends=True)
    if damage == "cut":  # the log lost its tail (fsync off, a power cut)
        seg.write_bytes(b"".join(lines[:100]))
    elif damage == "rewritten":  # as long as before, but another last event
        old = orjson.loads(lines[-1])["id"]
        new = old[:-1] + ("1" if old[-1] == "0" else "0")
        seg.write_bytes(b"".join(lines[:-1]) + lines[-1].replace(old.encode(), new.encode()))
    elif damage == "garbage":
        (pdir / state_file.NAME).write_bytes(b"{not json")
    elif damage == "other-format":
        (pdir / state_file.NAME).write_bytes(b'{"format": 99}')
    else:  # where it points and what it sums still right, one receipt malformed
        saved = orjson.loads((pdir / state_file.NAME).read_bytes())
        saved["receipts"][0][7] = "ab"
        (pdir / state_file.NAME).write_bytes(orjson.dumps(saved))
    assert state_file.load_state(pdir) is None
    reads = _reads(monkeypatch)
    with Writer(settings1) as restarted:
        _mixed(restarted, random.Random(7), 10, "b")
        held = restarted._parts[P].state
        assert held.accounts == _full_read(settings1).accounts
    assert reads[0] == (100 if damage == "cut" else logged)  # read from the beginning


def test_the_checksum_carries_on_across_restarts_and_segments(
    make_settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: Settings = make_settings(partitions=1, fsync="off", segment_bytes=4096)  # type: ignore[operator]
    for n in range(4):  # each writer loads the last save and saves on from its mark
        with Writer(s) as writer:
            _mixed(writer, random.Random(20 + n), 40, f"r{n}")
        assert state_file.load_state(_pdir(s)) is not None
    assert len(segment_bases(_pdir(s))) > 4
    reads = _reads(monkeypatch)
    with Writer(s) as writer:
        _mixed(writer, random.Random(30), 5, "z")
        assert writer._parts[P].state.accounts == _full_read(s).accounts
    assert reads[0] == 0


def test_a_save_cut_short_by_a_crash_leaves_no_temp_file_behind(settings1: Settings) -> None:
    with Writer(settings1) as writer:
        _mixed(writer, random.Random(11), 5, "a")
    pdir = _pdir(settings1)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = pdir / f".{state_file.NAME}.{dead.pid}.tmp"
    stale.write_bytes(b"half a sa")
    state_file.load_state(pdir)
    assert not stale.exists()
