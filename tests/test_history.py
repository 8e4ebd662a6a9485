"""Reading one account's history back: exactly its events, in order, across segments,
whatever other accounts' events (even ones naming it) lie between."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from eventlog import Writer, history
from eventlog._exceptions import CorruptLog
from eventlog.history import account_events
from eventlog.records import StoredEvent, partition_of
from eventlog.segments import Cursor, partition_dir, segment_bases, segment_path
from eventlog.settings import Settings

MakeSettings = Callable[..., Settings]
ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(12)]
TARGET = ACCOUNTS[0]


def _fill(s: Settings, events: int) -> None:
    rng = random.Random(11)
    with Writer(s) as writer:
        for n in range(events):
            account = rng.choice(ACCOUNTS)
            if n % 5 == 0 and account != TARGET:  # another account's event naming TARGET
                record = {"state": "awaiting_reply", "note": "x" * rng.randrange(2000)}
                data = {"friend_steam_id": TARGET, "negotiation": record}
                writer.append(account, "FriendNegotiationUpserted", data)
            else:
                offer = {"trade_offer_id": str(n), "state": "Active", "pad": "y" * 300}
                writer.append(account, "TradeOfferUpserted", {"offer": offer})


def _reference(s: Settings, account: str) -> list[StoredEvent]:
    p = partition_of(account, s.partitions)
    cursor = Cursor(partition_dir(s.log_dir, p), p)
    try:
        events, _ = cursor.read()
    finally:
        cursor.close()
    return [e for e in events if e.account == account]


def test_history_is_the_accounts_events_in_order_across_segments(
    make_settings: MakeSettings,
) -> None:
    s = make_settings(fsync="off", segment_bytes=16_384)
    _fill(s, 600)
    p = partition_of(TARGET, s.partitions)
    assert len(segment_bases(partition_dir(s.log_dir, p))) > 3  # rolled several times
    for account in ACCOUNTS:
        want = _reference(s, account)
        assert want  # every account has events
        assert account_events(s, account, 1, 10**9) == want
        assert [e.version for e in want] == list(range(1, len(want) + 1))
    want = _reference(s, TARGET)
    assert account_events(s, TARGET, 3, 4) == want[2:6]
    assert account_events(s, TARGET, len(want) + 1, 10) == []
    assert account_events(s, "76561199999999998", 1, 10) == []


@pytest.mark.parametrize("chunk", [7, 100, 1000])
def test_lines_cut_by_the_read_chunks_are_read_whole(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    s = make_settings(fsync="off", segment_bytes=16_384)
    _fill(s, 150)
    monkeypatch.setattr(history, "_CHUNK", chunk)  # every line spans reads
    for account in ACCOUNTS[:4]:
        assert account_events(s, account, 1, 10**9) == _reference(s, account)


def test_a_partial_last_line_is_not_an_event_yet(make_settings: MakeSettings) -> None:
    s = make_settings(fsync="off")
    _fill(s, 60)
    want = _reference(s, TARGET)
    pdir = partition_dir(s.log_dir, partition_of(TARGET, s.partitions))
    last = segment_path(pdir, segment_bases(pdir)[-1])
    with open(last, "ab") as f:  # a write in progress: the account's id, no newline yet
        f.write(b'{"id":"x","account":"' + TARGET.encode() + b'","version":')
    assert account_events(s, TARGET, 1, 10**9) == want


def test_a_damaged_line_naming_the_account_is_named(make_settings: MakeSettings) -> None:
    s = make_settings(fsync="off")
    _fill(s, 60)
    pdir = partition_dir(s.log_dir, partition_of(TARGET, s.partitions))
    path = segment_path(pdir, segment_bases(pdir)[0])
    lines = path.read_bytes().split(b"\n")
    bad = next(i for i, line in enumerate(lines) if TARGET.encode() in line and i > 2)
    cut = lines[bad].index(TARGET.encode()) + 40
    lines[bad] = lines[bad][:cut]  # cut inside the JSON, after the account's id
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptLog) as caught:
        account_events(s, TARGET, 1, 10**9)
    assert caught.value.line == bad + 1 and caught.value.path == str(path)
