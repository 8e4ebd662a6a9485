"""The writer's decisions and the log's repair (Guarantees 2, 5 and 6).

A torn last line is cut off by the next writer and never shown to a reader; a
damaged line in the middle stops reading with the file and line named; a wrong
expected version, a repeated idempotency key and a removal of absent friends
append nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventlog._exceptions import CorruptLog, IdempotencyKeyReused, LogUnavailable, VersionConflict
from eventlog.commands import AppendResult
from eventlog.filelog import PartitionFile
from eventlog.records import StoredEvent, partition_of
from eventlog.segments import Cursor, partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from eventlog.writer import Writer

ACCOUNT = "76561199027634480"
FRIEND_A = "76561198123456789"
FRIEND_B = "76561198123561518"
FRIEND_C = "76561198000000042"


def pdir(settings: Settings, account: str = ACCOUNT) -> Path:
    return partition_dir(settings.log_dir, partition_of(account, settings.partitions))


def segment(settings: Settings, account: str = ACCOUNT) -> Path:
    d = pdir(settings, account)
    return segment_path(d, segment_bases(d)[-1])


def read_log(settings: Settings, account: str = ACCOUNT) -> list[StoredEvent]:
    p = partition_of(account, settings.partitions)
    cursor = Cursor(pdir(settings, account), p)
    try:
        return cursor.read()[0]
    finally:
        cursor.close()


def upsert(
    writer: Writer,
    n: int,
    account: str = ACCOUNT,
    expected_version: int | None = None,
    idempotency_key: str | None = None,
) -> AppendResult:
    return writer.append(
        account,
        "TradeOfferUpserted",
        {"offer": {"trade_offer_id": str(n)}},
        expected_version=expected_version,
        idempotency_key=idempotency_key,
    )


def put_friend(writer: Writer, friend: str, state: str = "awaiting_reply") -> AppendResult:
    return writer.append(
        ACCOUNT,
        "FriendNegotiationUpserted",
        {"friend_steam_id": friend, "negotiation": {"friend_steam_id": friend, "state": state}},
    )


# --- torn tail ---------------------------------------------------------------------------


def test_torn_tail_is_cut_off_by_the_next_writer_and_never_read(settings: Settings) -> None:
    with Writer(settings) as w:
        for n in range(3):
            upsert(w, n)
    path = segment(settings)
    whole = path.read_bytes()
    partial = StoredEvent.from_line(whole.splitlines()[-1]).to_line()[:-25]  # no newline
    with path.open("ab") as f:
        f.write(partial)

    # A reader sees the complete lines only, and is told a partial line follows.
    p = partition_of(ACCOUNT, settings.partitions)
    reader = Cursor(pdir(settings), p)
    events, torn = reader.read()
    assert [e.offset for e in events] == [0, 1, 2]
    assert torn == len(partial)
    assert reader.read() == ([], len(partial))  # asking again never returns it either

    # A new writer (a restart) cuts the tail off and continues without a gap.
    with Writer(settings) as w:
        r = upsert(w, 3)
    assert (r.offset, r.version) == (3, 4)
    raw = path.read_bytes()
    assert raw.startswith(whole) and raw.endswith(b"\n")
    assert [StoredEvent.from_line(line).offset for line in raw.splitlines()] == [0, 1, 2, 3]

    # The reader that stopped before the torn bytes goes on with the new line.
    more, torn = reader.read()
    reader.close()
    assert ([e.id for e in more], torn) == ([r.event_id], 0)
    assert [e.offset for e in read_log(settings)] == [0, 1, 2, 3]


def test_torn_tail_cut_off_under_the_lock_by_catch_up(settings: Settings) -> None:
    with Writer(settings) as w:
        upsert(w, 0)
    path = segment(settings)
    with path.open("ab") as f:
        f.write(b'{"id": "0190f')
    pf = PartitionFile(settings.log_dir, partition_of(ACCOUNT, settings.partitions), 1 << 20)
    try:
        with pf.locked():
            assert [e.offset for e in pf.catch_up()] == [0]
        assert pf.next_offset == 1
    finally:
        pf.close()
    assert path.read_bytes().endswith(b"}\n")
    assert len(path.read_bytes().splitlines()) == 1


def test_torn_tail_in_a_writer_that_already_runs(settings: Settings, writer: Writer) -> None:
    """Another process crashed mid-write while this writer was open: its next append repairs."""
    upsert(writer, 0)
    with segment(settings).open("ab") as f:
        f.write(b'{"id":"torn","acc')
    r = upsert(writer, 1)
    assert (r.offset, r.version) == (1, 2)
    assert [e.offset for e in read_log(settings)] == [0, 1]


# --- a damaged line in the middle ----------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        b"\x00\x00\x00\x00\x00\x00",  # zeros a crashed filesystem may leave
        b"garbage \xff\xfe not json",
        b'{"id": "x", "account": "76561199027634480"}',  # JSON, but not an event
        b"1234567890",  # JSON scalars and arrays: valid JSON, not an object
        b'"a string"',
        b"[1, 2, 3]",
        b"",  # an empty line
    ],
    ids=["zeros", "garbage", "not-an-event", "number", "string", "array", "empty"],
)
def test_damaged_line_in_the_middle_names_file_and_line(
    settings: Settings, writer: Writer, damage: bytes
) -> None:
    for n in range(5):
        upsert(writer, n)
    path = segment(settings)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], damage + b"\n", *lines[2:]]))  # line 3 is bad

    p = partition_of(ACCOUNT, settings.partitions)
    cursor = Cursor(pdir(settings), p)
    with pytest.raises(CorruptLog) as caught:
        cursor.read()
    cursor.close()
    assert caught.value.path == str(path)
    assert caught.value.line == 3
    assert f"{path}:3" in str(caught.value)

    # A writer refuses to append after it: the process stops, nothing is written.
    before = path.read_bytes()
    with Writer(settings) as fresh, pytest.raises(CorruptLog, match=f"{path}:3"):
        upsert(fresh, 99)
    assert path.read_bytes() == before


def test_a_line_whose_account_does_not_belong_in_its_partition_is_damage(
    settings: Settings, writer: Writer
) -> None:
    """A damaged account id can leave the line valid JSON: the partition its id hashes
    to tells it (the projectors parked an account nobody ever wrote to)."""
    for n in range(3):
        upsert(writer, n)
    path = segment(settings)
    lines = path.read_bytes().splitlines(keepends=True)
    bad = orjson.loads(lines[1])
    bad["account"] = "7656#garbage#1199027634480"
    path.write_bytes(b"".join([lines[0], orjson.dumps(bad) + b"\n", lines[2]]))
    cursor = Cursor(pdir(settings), partition_of(ACCOUNT, settings.partitions))
    with pytest.raises(CorruptLog, match=f"{path}:2: account .* does not belong"):
        cursor.read()
    cursor.close()


def test_a_line_out_of_position_is_damage(settings: Settings, writer: Writer) -> None:
    for n in range(3):
        upsert(writer, n)
    path = segment(settings)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[2], lines[1]]))  # offsets 0, 2, 1
    cursor = Cursor(pdir(settings), partition_of(ACCOUNT, settings.partitions))
    with pytest.raises(CorruptLog, match=f"{path}:2: position"):
        cursor.read()
    cursor.close()


# --- optimistic concurrency --------------------------------------------------------------


def test_wrong_expected_version_conflicts_and_appends_nothing(
    settings: Settings, writer: Writer
) -> None:
    assert upsert(writer, 0, expected_version=0).version == 1
    assert upsert(writer, 1, expected_version=1).version == 2
    before = segment(settings).read_bytes()
    for wrong in (0, 1, 3, 17):
        with pytest.raises(VersionConflict) as caught:
            upsert(writer, 2, expected_version=wrong)
        assert (caught.value.expected, caught.value.actual) == (wrong, 2)
    assert segment(settings).read_bytes() == before
    # The right version still goes through, right after.
    r = upsert(writer, 2, expected_version=2)
    assert (r.version, r.offset) == (3, 2)
    assert [e.version for e in read_log(settings)] == [1, 2, 3]


def test_expected_version_sees_appends_of_another_writer(settings: Settings) -> None:
    with Writer(settings) as a, Writer(settings) as b:
        upsert(a, 0)
        assert upsert(b, 1, expected_version=1).version == 2  # b read a's append
        with pytest.raises(VersionConflict):
            upsert(a, 2, expected_version=1)  # a must see b's
        assert upsert(a, 2, expected_version=2).version == 3
    assert [e.version for e in read_log(settings)] == [1, 2, 3]


# --- idempotent retries ------------------------------------------------------------------


def _syncs_of(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The inodes fdatasync'd from here on, in order."""
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


def test_a_retry_answered_from_lines_no_sync_covered_syncs_them_first(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed between its write and its sync leaves its lines in the page
    cache only. A writer that answers a retry from them (its receipt) acknowledges
    them, so it syncs them first, though it writes nothing (Guarantee 1)."""
    with Writer(settings) as first_writer:
        first = upsert(first_writer, 1, idempotency_key="req-1")
    inode = segment(settings).stat().st_ino
    synced = _syncs_of(monkeypatch)
    with Writer(settings) as restarted:  # it reads the line at its start
        retry = upsert(restarted, 1, idempotency_key="req-1")
        assert retry.duplicate and retry.event_id == first.event_id
        assert inode in synced  # before the answer: the writer is still open

    with Writer(settings) as a, Writer(settings) as b:
        upsert(b, 2)  # b has read the partition and synced it
        a_first = upsert(a, 3, idempotency_key="req-2")
        synced.clear()
        retry = upsert(b, 3, idempotency_key="req-2")  # b reads a's line under the lock
        assert retry.duplicate and retry.event_id == a_first.event_id
        assert inode in synced


def test_repeated_idempotency_key_returns_the_first_result(
    settings: Settings, writer: Writer
) -> None:
    first = upsert(writer, 1, idempotency_key="req-1")
    assert first.appended and not first.duplicate
    upsert(writer, 2)  # the account moves on
    before = segment(settings).read_bytes()

    again = upsert(writer, 1, idempotency_key="req-1")
    other_body = upsert(writer, 555, idempotency_key="req-1")  # a retry is answered, not redone
    for retry in (again, other_body):
        assert retry.duplicate and not retry.appended
        assert (retry.event_id, retry.version, retry.offset) == (
            first.event_id,
            first.version,
            first.offset,
        )
        assert retry.findings == first.findings
    assert segment(settings).read_bytes() == before

    # The same key on another account is a different request.
    other = upsert(writer, 1, account="76561199027642399", idempotency_key="req-1")
    assert other.appended and other.event_id != first.event_id

    # The key is in the log, so a brand-new writer (a restart) still knows it.
    assert read_log(settings)[0].meta["idempotency_key"] == "req-1"
    writer.close()
    with Writer(settings) as restarted:
        retry = upsert(restarted, 1, idempotency_key="req-1")
        assert retry.duplicate and not retry.appended
        assert (retry.event_id, retry.version, retry.offset) == (
            first.event_id,
            first.version,
            first.offset,
        )
        fresh = upsert(restarted, 3, idempotency_key="req-2")
        assert fresh.appended and fresh.version == 3
    assert [e.version for e in read_log(settings) if e.account == ACCOUNT] == [1, 2, 3]


def test_idempotent_retry_is_answered_before_the_version_check(
    settings: Settings, writer: Writer
) -> None:
    first = upsert(writer, 1, expected_version=0, idempotency_key="k")
    upsert(writer, 2)
    retry = upsert(writer, 1, expected_version=0, idempotency_key="k")
    assert retry.duplicate and retry.event_id == first.event_id
    assert len(read_log(settings)) == 2


def test_idempotency_key_seen_from_another_process(settings: Settings) -> None:
    with Writer(settings) as a, Writer(settings) as b:
        first = upsert(a, 1, idempotency_key="shared")
        retry = upsert(b, 1, idempotency_key="shared")
    assert retry.duplicate and retry.event_id == first.event_id
    assert len(read_log(settings)) == 1


# --- removing friends ----------------------------------------------------------------------


def test_removing_absent_friends_appends_nothing(settings: Settings, writer: Writer) -> None:
    nothing = writer.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_A]})
    assert not nothing.appended and nothing.offset is None and nothing.event_id is None
    assert nothing.findings.removed == ()
    assert read_log(settings) == []

    put_friend(writer, FRIEND_A)
    put_friend(writer, FRIEND_B, "accepted")
    before = segment(settings).read_bytes()
    r = writer.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_C]})
    assert not r.appended and r.version == 2
    assert segment(settings).read_bytes() == before

    # Only the present ones are recorded, repeats dropped.
    r = writer.append(
        ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_C, FRIEND_B, FRIEND_B]}
    )
    assert r.appended and r.version == 3 and r.findings.removed == (FRIEND_B,)
    assert r.findings.previous_state == "accepted"
    assert read_log(settings)[-1].data == {"friend_steam_ids": [FRIEND_B]}

    # Removed once, absent after: a second removal appends nothing, also after a restart.
    assert not writer.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_B]}).appended
    writer.close()
    with Writer(settings) as restarted:
        again = restarted.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_B]})
        assert not again.appended and again.version == 3
        gone = restarted.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_A]})
        assert gone.appended and gone.version == 4
    assert [e.type for e in read_log(settings)] == [
        "FriendNegotiationUpserted",
        "FriendNegotiationUpserted",
        "FriendsRemoved",
        "FriendsRemoved",
    ]


def test_friends_saved_in_a_document_can_be_removed(settings: Settings, writer: Writer) -> None:
    doc = {
        "account_steam_id": ACCOUNT,
        "negotiations": {FRIEND_A: {"state": "x"}, FRIEND_B: {"friend_steam_id": FRIEND_B}},
    }
    writer.append(ACCOUNT, "NegotiationsSaved", doc)
    r = writer.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_A, FRIEND_C]})
    assert r.findings.removed == (FRIEND_A,)
    # A later whole-document save replaces the friend set.
    writer.append(ACCOUNT, "NegotiationsSaved", {"negotiations": {}})
    assert not writer.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_B]}).appended
    assert [e.version for e in read_log(settings)] == [1, 2, 3]
    assert orjson.loads(segment(settings).read_bytes().splitlines()[0])["data"] == doc


def test_receipts_hold_no_data_and_leave_after_the_window() -> None:
    from eventlog.state import RECEIPT_WINDOW, PartitionState

    def event(version: int, ts: str, key: str | None) -> StoredEvent:
        offer = {"trade_offer_id": str(version), "items_to_give": ["x" * 1000]}
        meta = {"idempotency_key": key} if key else {}
        return StoredEvent(
            f"e{version}", ACCOUNT, version, 0, version - 1, "TradeOfferUpserted", ts,
            {"offer": offer}, meta,
        )  # fmt: skip

    state = PartitionState()
    state.observe(event(1, "2026-01-01T00:00:00.000Z", "old"))
    state.observe(event(2, "2026-01-01T12:00:00.000Z", "mid"))
    kept = state.receipts[(ACCOUNT, "old")]
    assert not hasattr(kept, "data") and (kept.version, kept.offset) == (1, 0)
    assert kept.event(ACCOUNT, 0).data == {}  # an answer, not the document again

    # Just inside the window both answer; a day after the first, it is forgotten.
    assert RECEIPT_WINDOW.total_seconds() == 24 * 3600
    state.observe(event(3, "2026-01-01T23:59:00.000Z", None))
    assert set(state.receipts) == {(ACCOUNT, "old"), (ACCOUNT, "mid")}
    state.observe(event(4, "2026-01-02T00:01:00.000Z", None))
    assert set(state.receipts) == {(ACCOUNT, "mid")}
    state.observe(event(5, "2026-01-03T00:00:00.000Z", "new"))
    assert set(state.receipts) == {(ACCOUNT, "new")}
    assert state.account(ACCOUNT).version == 5


def test_a_reader_whose_lines_were_cut_off_again_says_so(settings: Settings) -> None:
    """A reader without the lock can read the complete lines of a write that then fails
    and is cut off (disk full): its position is then past the segment's end, and its next
    read says so instead of going on from a place that is not in the log."""
    with Writer(settings) as w:
        upsert(w, 0)
        upsert(w, 1)
    cursor = Cursor(pdir(settings), partition_of(ACCOUNT, settings.partitions))
    try:
        assert len(cursor.read()[0]) == 2
        path = segment(settings)
        with path.open("r+b") as f:
            f.truncate(len(path.read_bytes().splitlines(keepends=True)[0]))
        with pytest.raises(CorruptLog, match="shorter than read"):
            cursor.read()
    finally:
        cursor.close()


def test_a_batch_whose_sync_failed_is_cut_off(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its callers are answered with the error (a 503 over HTTP: "nothing appended"), so
    its lines must not stay for the next append to take as committed."""
    real_sync = PartitionFile.sync
    calls: list[int] = []

    def sync(self: PartitionFile) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise LogUnavailable("cannot fsync: [Errno 5] Input/output error (injected)")
        real_sync(self)

    monkeypatch.setattr(PartitionFile, "sync", sync)
    with Writer(settings) as writer:
        upsert(writer, 1)
        with pytest.raises(LogUnavailable, match="injected"):
            upsert(writer, 2)
        assert [e.version for e in read_log(settings)] == [1]
        third = upsert(writer, 3)
    assert third.version == 2
    log = read_log(settings)
    assert [(e.version, e.data["offer"]["trade_offer_id"]) for e in log] == [(1, "1"), (2, "3")]


def test_a_segment_left_behind_is_synced_whoever_wrote_its_end(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fsync=batch the last lines of a segment can be another process's, still
    waiting for its batch sync: the writer that rolls to a new segment syncs the old one
    first, so that what follows in the log is never durable before what precedes it."""
    s = make_settings(partitions=1, segment_bytes=4096)

    def line(offset: int) -> bytes:
        return StoredEvent(
            f"e{offset}", ACCOUNT, offset + 1, 0, offset, "TradeOfferUpserted",
            "2025-01-01T00:00:00.000Z", {"offer": {"trade_offer_id": str(offset), "x": "y" * 1500}},
        ).to_line()  # fmt: skip

    other, mine = (PartitionFile(s.log_dir, 0, s.segment_bytes) for _ in range(2))
    try:
        with other.locked():
            other.catch_up()
            other.write(line(0) + line(1), 2)  # not synced: its batch sync is not due yet
        synced: list[str] = []
        real_fdatasync = os.fdatasync

        def fdatasync(fd: int) -> None:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fdatasync(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        with mine.locked():
            mine.catch_up()
            mine.write(line(2) + line(3) + line(4), 3)  # past 4 KiB: a new segment
        assert len(segment_bases(pdir(s))) == 2
        assert synced == [str(segment_path(pdir(s), 0))]
    finally:
        other.close()
        mine.close()


def test_no_op_receipts_hold_a_digest_and_leave_after_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A keyed write that appended nothing answers its retry alike for the receipts'
    window, keeping a digest of what it asked (not the list: it may be huge)."""
    from eventlog import decisions
    from eventlog.commands import make_command
    from eventlog.state import PartitionState

    state = PartitionState()
    many = [str(76561198000000000 + i) for i in range(2000)]

    def removal(ts: str, friends: list[str]) -> tuple[list[StoredEvent], object]:
        cmd = make_command(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": friends}, 8,
                           idempotency_key="k")  # fmt: skip
        monkeypatch.setattr(decisions, "utc_ts", lambda: ts)
        outcomes: list[tuple[object, object]] = []
        events = decisions.decide_all(state, 0, 0, [(cmd, None, None)], outcomes)
        return events, outcomes[0][1]

    events, outcome = removal("2026-01-01T00:00:00.000Z", many)
    assert events == [] and outcome[0].removed == ()  # type: ignore[index]
    noop = state.noops[(ACCOUNT, "k")]
    assert len(noop.asked) == 32  # a digest
    state.account(ACCOUNT).friends[many[0]] = "a"  # the friend added back meanwhile
    events, outcome = removal("2026-01-01T23:59:00.000Z", list(reversed(many)))
    assert events == [] and outcome[0].removed == ()  # type: ignore[index]  # the same set
    _, refused = removal("2026-01-01T23:59:00.000Z", many[1:])
    assert type(refused).__name__ == "IdempotencyKeyReused"
    # A day on, the key is a new request, as after a write that appended.
    events, _ = removal("2026-01-02T00:01:00.000Z", many)
    assert [e.data["friend_steam_ids"] for e in events] == [[many[0]]]


def _remove(writer: Writer, key: str) -> AppendResult:
    return writer.append(
        ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_A]}, idempotency_key=key
    )


def test_a_no_op_receipt_answers_a_retry_in_another_process_and_after_a_restart(
    settings: Settings,
) -> None:
    """A keyed removal of an absent friend appends nothing. Its retry through the other
    worker, or after a restart, once the friend was added back, is answered alike and
    removes nothing (Guarantee 6): the receipt is shared beside the log."""
    with Writer(settings) as a, Writer(settings) as b:
        first = _remove(a, "noop-1")
        assert not first.appended and first.findings.removed == ()
        put_friend(b, FRIEND_A)
        retry = _remove(b, "noop-1")
        assert not retry.appended and retry.findings.removed == ()
        with pytest.raises(IdempotencyKeyReused):  # the key names that removal only
            b.append(ACCOUNT, "FriendsRemoved", {"friend_steam_ids": [FRIEND_B]},
                     idempotency_key="noop-1")  # fmt: skip
    with Writer(settings) as restarted:
        again = _remove(restarted, "noop-1")
        assert not again.appended and again.findings.removed == ()
        other = _remove(restarted, "noop-2")  # a new key: the friend is there to remove
        assert other.appended and other.findings.removed == (FRIEND_A,)
    assert [e.type for e in read_log(settings)] == ["FriendNegotiationUpserted", "FriendsRemoved"]


def test_no_op_receipts_pass_a_torn_line_and_a_rewrite(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash's partial receipt line is cut off by the next append; a file rewritten
    with the receipts in their window (past its size limit) is read again from the start
    by the other processes."""
    from eventlog import noop_receipts

    path = pdir(settings) / noop_receipts.NAME
    with Writer(settings) as a, Writer(settings) as b:
        assert not _remove(a, "k-1").appended
        with path.open("ab") as f:
            f.write(b'{"account": "765611')  # a process killed mid-write
        assert not _remove(b, "k-2").appended  # b reads k-1 and cuts the partial line
        lines = path.read_bytes().splitlines()
        assert [orjson.loads(x)["key"] for x in lines] == ["k-1", "k-2"]

        monkeypatch.setattr(noop_receipts, "COMPACT_BYTES", 1)  # every append rewrites
        inode = path.stat().st_ino
        assert not _remove(a, "k-3").appended
        assert path.stat().st_ino != inode
        assert [orjson.loads(x)["key"] for x in path.read_bytes().splitlines()] == [
            "k-1", "k-2", "k-3",
        ]  # fmt: skip
        put_friend(a, FRIEND_A)
        for key in ("k-1", "k-2", "k-3"):  # b reads the rewritten file from its start
            assert not _remove(b, key).appended
    assert [e.type for e in read_log(settings)] == ["FriendNegotiationUpserted"]


def test_no_op_receipts_are_not_rewritten_at_every_append_past_the_limit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite that keeps nearly everything (10,000 receipts of long keys pass the
    size limit) is not redone at each append: the next comes past twice what it kept."""
    from eventlog import noop_receipts

    monkeypatch.setattr(noop_receipts, "COMPACT_BYTES", 1)  # past it from the first
    rewrites: list[int] = []
    real = noop_receipts.NoopReceipts._compact

    def counted(self: noop_receipts.NoopReceipts, state: object) -> None:
        rewrites.append(1)
        real(self, state)  # type: ignore[arg-type]

    monkeypatch.setattr(noop_receipts.NoopReceipts, "_compact", counted)
    with Writer(settings) as writer:
        for n in range(16):
            assert not _remove(writer, f"key-{n}").appended
    assert 2 <= len(rewrites) <= 6  # at about 1, 2, 4, 8, 16 receipts, not 16 times
    path = pdir(settings) / noop_receipts.NAME
    keys = [orjson.loads(x)["key"] for x in path.read_bytes().splitlines()]
    assert keys == [f"key-{n}" for n in range(16)]


def test_a_retry_answered_from_another_process_s_no_op_receipt_syncs_it_first(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a retry answered from another process's event (Guarantee 1): its no-op
    receipt may be unsynced (that process killed before its fsync)."""
    from eventlog import noop_receipts

    with Writer(settings) as a, Writer(settings) as b:
        upsert(b, 1)  # b has read the partition and synced it
        assert not _remove(a, "gone-1").appended
        inode = (pdir(settings) / noop_receipts.NAME).stat().st_ino
        synced = _syncs_of(monkeypatch)
        retry = _remove(b, "gone-1")
        assert not retry.appended and retry.findings.removed == ()
        assert inode in synced
