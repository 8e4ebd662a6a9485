"""One contract, two logs: the JSON-lines file log and the Redis stream log.

The same tests run against the file log (appended through the Writer, read
with a Cursor, segments rolled at 4 KiB) and the stream log (StreamLog on a
real redis-server): offsets are the next ones, in order, with no gap; reads
start at any offset, across segment rolls; a position that is not next is
refused (the stream's append-if-next script raises StreamMismatch; the file's
offsets are assigned by the writer, so a line out of position is refused by
the Cursor, and by the next writer, as CorruptLog).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import pytest
import redis
import uuid_utils

from eventlog._exceptions import CorruptLog, StreamMismatch
from eventlog.filelog import PartitionFile
from eventlog.keys import Keys
from eventlog.records import StoredEvent, partition_of, utc_ts
from eventlog.relay import Relay
from eventlog.segments import Cursor, partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from eventlog.writer import Writer

ACCOUNT = "76561199027634480"
FILLER = "f" * 300  # ~450-byte lines: a 4 KiB segment holds about 9


def offer_data(n: int) -> dict[str, object]:
    return {"offer": {"trade_offer_id": str(n), "note": FILLER}}


class LogUnderTest(Protocol):
    refusal: type[Exception]

    def append(self, count: int) -> list[tuple[int, str]]:
        """Append `count` events at the end, in order; their (offset, id)."""

    def read(self, from_offset: int, limit: int = 0) -> list[StoredEvent]:
        """Events from `from_offset` on, in order (at most `limit` if > 0)."""

    def top(self) -> int:
        """The last offset held, -1 when empty."""

    def append_at(self, offset: int) -> None:
        """Try to place one event at `offset` itself; raise `refusal` if refused.

        Leaves the log as it was.
        """

    def segments(self) -> int | None:
        """How many segments hold the log (None: not segmented)."""


class FileLog:
    refusal: type[Exception] = CorruptLog

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.p = partition_of(ACCOUNT, settings.partitions)
        self.pdir = partition_dir(settings.log_dir, self.p)
        self.writer = Writer(settings)
        self.n = 0
        self.lock = threading.Lock()

    def close(self) -> None:
        self.writer.close()

    def append(self, count: int) -> list[tuple[int, str]]:
        # One by one: a segment rolls between batches, so small batches roll it often.
        out = []
        for _ in range(count):
            with self.lock:
                self.n += 1
                n = self.n
            r = self.writer.append(ACCOUNT, "TradeOfferUpserted", offer_data(n))
            assert r.offset is not None and r.event_id is not None
            out.append((r.offset, r.event_id))
        return out

    def read(self, from_offset: int, limit: int = 0) -> list[StoredEvent]:
        cursor = Cursor(self.pdir, self.p, from_offset)
        try:
            events, _ = cursor.read(limit)
        finally:
            cursor.close()
        return events[:limit] if limit else events

    def top(self) -> int:
        return len(self.read(0)) - 1

    def append_at(self, offset: int) -> None:
        pf = PartitionFile(self.settings.log_dir, self.p, self.settings.segment_bytes)
        try:
            with pf.locked():
                pf.catch_up()
                path = segment_path(self.pdir, pf._cursor.base)
        finally:
            pf.close()
        size = path.stat().st_size if path.exists() else 0
        with path.open("ab") as f:
            f.write(make_event(self.p, offset).to_line())
        try:
            # A writer refuses to go on past it...
            with Writer(self.settings) as other, pytest.raises(CorruptLog):
                other.append(ACCOUNT, "TradeOfferUpserted", offer_data(999_999))
            # ...and so does every reader.
            self.read(0)
        finally:
            with path.open("r+b") as f:
                f.truncate(size)

    def segments(self) -> int | None:
        return len(segment_bases(self.pdir))


class RedisLog:
    refusal: type[Exception] = StreamMismatch

    def __init__(self, client: redis.Redis, settings: Settings, prefix: str = "contract") -> None:
        self.p = partition_of(ACCOUNT, settings.partitions)
        self.stream = StreamLog(client, Keys(prefix))

    def close(self) -> None:
        pass

    def append(self, count: int) -> list[tuple[int, str]]:
        sizes = [min(n, count) for n in (1, 3, 7)] if count > 11 else [count]
        sizes.append(count - sum(sizes))
        out: list[tuple[int, str]] = []
        for size in sizes:
            if size <= 0:
                continue
            while True:  # append-if-next: another appender may take the offset first
                top = self.stream.top(self.p)
                events = [make_event(self.p, top + 1 + i) for i in range(size)]
                try:
                    self.stream.append(self.p, events)
                except StreamMismatch:
                    continue
                out.extend((e.offset, e.id) for e in events)
                break
        return out

    def read(self, from_offset: int, limit: int = 0) -> list[StoredEvent]:
        if limit:
            return self.stream.read(self.p, from_offset, count=limit)
        out: list[StoredEvent] = []
        while page := self.stream.read(self.p, from_offset + len(out), count=100):
            out.extend(page)
        return out

    def top(self) -> int:
        return self.stream.top(self.p)

    def append_at(self, offset: int) -> None:
        self.stream.append(self.p, [make_event(self.p, offset)])

    def segments(self) -> int | None:
        return None


def make_event(partition: int, offset: int) -> StoredEvent:
    return StoredEvent(
        id=str(uuid_utils.uuid7()),
        account=ACCOUNT,
        version=offset + 1,
        partition=partition,
        offset=offset,
        type="TradeOfferUpserted",
        ts=utc_ts(),
        data=offer_data(offset),
        meta={"source": "test"},
    )


@pytest.fixture
def small_segments(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(segment_bytes=4096, fsync="off")


@pytest.fixture(params=["file", "stream"])
def log(request: pytest.FixtureRequest, small_segments: Settings) -> Iterator[LogUnderTest]:
    impl: FileLog | RedisLog
    if request.param == "file":
        impl = FileLog(small_segments)
    else:
        impl = RedisLog(request.getfixturevalue("redis_client"), small_segments)
    yield impl
    impl.close()


def test_an_empty_log(log: LogUnderTest) -> None:
    assert log.top() == -1
    assert log.read(0) == []
    assert log.read(5) == []


def test_appends_take_the_next_offsets_in_order(log: LogUnderTest) -> None:
    placed = log.append(1) + log.append(5) + log.append(17)
    assert [offset for offset, _ in placed] == list(range(23))
    events = log.read(0)
    assert [(e.offset, e.id) for e in events] == placed
    assert log.top() == 22
    assert [e.data["offer"]["note"] for e in events] == [FILLER] * 23


def test_reading_from_an_offset_in_the_middle(log: LogUnderTest) -> None:
    ids = [event_id for _, event_id in log.append(50)]
    for k in (0, 1, 8, 9, 10, 25, 48, 49):
        assert [e.id for e in log.read(k)] == ids[k:]
        assert [e.offset for e in log.read(k, limit=5)] == list(range(k, min(k + 5, 50)))
    assert log.read(50) == []
    assert log.read(60) == []


def test_reading_across_segment_rolls(log: LogUnderTest) -> None:
    ids = [event_id for _, event_id in log.append(120)]
    segments = log.segments()
    if segments is not None:
        assert segments >= 10  # ~54 KB of lines in 4 KiB segments
    # Page through the whole log, a page never aligned with the segments.
    paged: list[StoredEvent] = []
    while page := log.read(len(paged), limit=7):
        assert page[0].offset == len(paged)
        paged.extend(page)
    assert [e.id for e in paged] == ids
    assert [e.offset for e in paged] == list(range(120))
    # Every start: each segment's first offset, and the one before it.
    for k in range(120):
        assert [e.id for e in log.read(k, limit=3)] == ids[k : k + 3]


def test_more_appends_after_a_roll_continue_the_offsets(log: LogUnderTest) -> None:
    first = log.append(30)
    second = log.append(30)
    assert [o for o, _ in first + second] == list(range(60))
    assert [e.id for e in log.read(25, limit=10)] == [i for _, i in (first + second)[25:35]]


@pytest.mark.parametrize("where", ["gap", "repeat-top", "rewind-to-0", "far-ahead"])
def test_a_position_that_is_not_next_is_refused(log: LogUnderTest, where: str) -> None:
    placed = log.append(12)
    top = log.top()
    offset = {"gap": top + 2, "repeat-top": top, "rewind-to-0": 0, "far-ahead": top + 100}[where]
    with pytest.raises(log.refusal):
        log.append_at(offset)
    # Nothing changed, and the log goes on at the next offset.
    assert log.top() == top
    assert [(e.offset, e.id) for e in log.read(0)] == placed
    assert [o for o, _ in log.append(1)] == [top + 1]


def test_the_first_entry_must_be_offset_0(log: LogUnderTest) -> None:
    with pytest.raises(log.refusal):
        log.append_at(1)
    assert log.top() == -1
    assert [o for o, _ in log.append(2)] == [0, 1]


def test_concurrent_appenders_get_one_order(log: LogUnderTest) -> None:
    per_thread: dict[int, list[tuple[int, str]]] = {}

    def run(t: int) -> None:
        got: list[tuple[int, str]] = []
        for _ in range(10):
            got.extend(log.append(3))
        per_thread[t] = got

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(per_thread) == 4
    events = log.read(0)
    assert [e.offset for e in events] == list(range(120))
    position = {e.id: e.offset for e in events}
    for got in per_thread.values():
        # Every append is in the log at the offset it was given, each thread's in its order.
        assert all(position[event_id] == offset for offset, event_id in got)
        assert [o for o, _ in got] == sorted(o for o, _ in got)
    assert len(position) == 120


# --- between the two: the stream's entry ids, and the relay across segment rolls --------


def test_stream_entry_ids_are_offset_plus_one(
    redis_client: redis.Redis, small_segments: Settings
) -> None:
    impl = RedisLog(redis_client, small_segments)
    impl.append(25)
    raw = cast(list[tuple[bytes, Any]], redis_client.xrange(Keys("contract").log(impl.p)))
    assert [entry_id for entry_id, _ in raw] == [f"0-{k + 1}".encode() for k in range(25)]
    with pytest.raises(StreamMismatch) as caught:
        impl.append_at(30)
    assert (caught.value.expected_top, caught.value.actual_top) == (29, 24)


def test_relay_copies_a_rolled_file_log_into_the_stream(
    redis_client: redis.Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(segment_bytes=4096, fsync="off")
    file_log = FileLog(settings)
    try:
        placed = file_log.append(100)
    finally:
        file_log.close()
    assert (file_log.segments() or 0) >= 10
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    # The stream already holds a prefix (it was level before Redis went away).
    stream.append(file_log.p, file_log.read(0, limit=13))
    relay = Relay(settings, stream)
    assert relay.level(file_log.p) == 87
    streamed = RedisLog(redis_client, settings, settings.key_prefix)
    assert [(e.offset, e.id) for e in streamed.read(0)] == placed
    assert [e.to_dict() for e in streamed.read(0)] == [e.to_dict() for e in file_log.read(0)]
    assert relay.level(file_log.p) == 0


def test_a_tailing_cursor_follows_the_writer_across_rolls(small_segments: Settings) -> None:
    """A reader kept open while a writer appends sees every event once, in order."""
    file_log = FileLog(small_segments)
    placed: list[tuple[int, str]] = []
    writer_thread = threading.Thread(target=lambda: placed.extend(file_log.append(150)))
    cursor = Cursor(file_log.pdir, file_log.p)
    seen: list[StoredEvent] = []
    try:
        writer_thread.start()
        deadline = time.monotonic() + 30
        while len(seen) < 150:
            assert time.monotonic() < deadline, f"reader stuck at {len(seen)}"
            events, _ = cursor.read(limit=4)
            seen.extend(events)
        writer_thread.join(timeout=30)
        assert cursor.read() == ([], 0)
    finally:
        cursor.close()
        file_log.close()
    assert (file_log.segments() or 0) >= 10
    assert [(e.offset, e.id) for e in seen] == placed


def test_a_cursor_starts_past_lines_longer_than_its_read_chunk(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies reach 16 MiB, lines more than the 4 MiB the cursor reads at a time: a
    cursor opened at an offset past such a line stands at that offset (the relay and
    the projectors open one at the stream's top or their checkpoint)."""
    import eventlog.segments as segments

    monkeypatch.setattr(segments, "_CHUNK", 256)
    file_log = FileLog(settings)
    try:
        placed = file_log.append(2)
        long = file_log.writer.append(ACCOUNT, "TradeOfferUpserted", offer_data(10**6))
        placed.append((long.offset or 0, long.event_id or ""))
        placed += file_log.append(2)
        assert segment_path(file_log.pdir, 0).stat().st_size > 4 * 256
        for start in range(len(placed) + 1):
            assert [(e.offset, e.id) for e in file_log.read(start)] == placed[start:]
    finally:
        file_log.close()
