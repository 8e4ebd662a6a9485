"""Redis down during appends (DESIGN "Phases", Guarantee 3), and the relay beside writers.

The file log is primary in phases 1-2: with Redis killed, appends keep
succeeding and say `redis_written: false`; once Redis is back the relay (in
process or `tradelog relay --until-caught-up`) levels each stream with the
file, same ids at the same offsets, and the writer's own appends resume
`redis_written: true` after its circuit breaker (filling a small gap itself).
With Redis up, a relay running beside the writers never takes a batch a writer
is still syncing: the writer adds it itself, or cuts it off if its sync fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import uuid_utils
from pytest_redis.executor import RedisExecutor

from eventlog.commands import AppendResult
from eventlog.filelog import PartitionFile
from eventlog.keys import Keys
from eventlog.records import StoredEvent, partition_of
from eventlog.relay import Relay
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from eventlog.writer import Writer

TRADELOG = Path(sys.executable).with_name("tradelog")  # the console script of this venv
# Accounts spread over several of the 4 partitions.
ACCOUNTS = ["76561199027634480", "76561199027642399", "76561199027650318", "76561199027658237"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def offer(account_i: int, n: int) -> tuple[str, str, dict[str, object]]:
    return (
        ACCOUNTS[account_i % len(ACCOUNTS)],
        "TradeOfferUpserted",
        {"offer": {"trade_offer_id": str(1_000_000 + n), "state": "Active"}},
    )


def file_log(settings: Settings, partition: int) -> list[StoredEvent]:
    cursor = Cursor(partition_dir(settings.log_dir, partition), partition)
    try:
        return cursor.read()[0]
    finally:
        cursor.close()


def stream_log(stream: StreamLog, partition: int) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    while page := stream.read(partition, len(out), count=1000):
        out.extend(page)
    return out


def assert_level(settings: Settings, stream: StreamLog) -> int:
    """Every partition's stream holds exactly the file log's events; return how many."""
    total = 0
    for p in range(settings.partitions):
        in_file = file_log(settings, p)
        in_stream = stream_log(stream, p)
        assert [(e.offset, e.id) for e in in_stream] == [(e.offset, e.id) for e in in_file]
        assert [e.to_dict() for e in in_stream] == [e.to_dict() for e in in_file]
        assert stream.top(p) == len(in_file) - 1
        total += len(in_file)
    return total


def assert_gapless(settings: Settings, results: list[AppendResult]) -> None:
    assert all(r.appended for r in results)
    for p in range(settings.partitions):
        offsets = sorted(r.offset for r in results if r.partition == p and r.offset is not None)
        assert offsets == list(range(len(offsets)))
    for account in {r.account for r in results}:
        versions = sorted(r.version for r in results if r.account == account)
        assert versions == list(range(1, len(versions) + 1))


def test_redis_killed_during_appends_then_relay_levels(
    redis_server: RedisExecutor,
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
) -> None:
    # No fsync: a slow disk is not what the append latencies below are about.
    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000, fsync="off")
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    results: list[AppendResult] = []
    latencies: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    with Writer(settings) as writer:

        def append_loop() -> None:
            n = 0
            try:
                while not stop.is_set() and n < 20_000:
                    started = time.monotonic()
                    results.append(writer.append(*offer(n, n)))
                    latencies.append(time.monotonic() - started)
                    n += 1
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        appender = threading.Thread(target=append_loop)
        appender.start()
        try:
            wait_for(lambda: len(results) >= 40 or bool(errors), 10, "appends with Redis up")
            assert all(r.redis_written for r in results[:40])

            redis_server.stop(stop_signal=signal.SIGKILL)  # while the appender runs
            killed_at = len(results)
            wait_for(
                lambda: (
                    sum(not r.redis_written for r in results[killed_at:]) >= 200 or bool(errors)
                ),
                10,
                "appends acknowledged with Redis down",
            )
            down = [r for r in results[killed_at:] if not r.redis_written]

            redis_server.start()
            restarted_at = len(results)
            # The writer's breaker reopens within ~1 s and it fills the gap itself.
            wait_for(
                lambda: any(r.redis_written for r in results[restarted_at:]) or bool(errors),
                10,
                "appends to resume redis_written=True after the restart",
            )
        finally:
            stop.set()
            appender.join(timeout=30)
        assert not errors, errors
        assert not appender.is_alive()

    # Every append succeeded, with no gap in offsets or versions, Redis or not.
    assert_gapless(settings, results)
    assert len(down) >= 200
    assert all(r.offset is not None for r in down)
    # A dead Redis costs an append little: none waited out the Redis timeout (5 s).
    assert max(latencies) < 2.5, f"slowest append took {max(latencies):.3f}s"
    # Once back, appends resume writing to the stream; the last ones all did.
    assert results[-1].redis_written

    # The relay levels every stream with the file: same ids, same offsets.
    relay = Relay(settings, stream)
    relay.run_once()
    assert assert_level(settings, stream) == len(results)
    assert relay.run_once().total == 0  # idempotent: nothing left to copy


def test_redis_back_with_old_data_cli_relay_copies_only_the_missing(
    redis_server: RedisExecutor,
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    with Writer(settings) as writer:
        before = [writer.append(*offer(i, i)) for i in range(20)]
        assert all(r.redis_written for r in before)
        redis_client.save()  # Redis comes back holding these 20 entries
        redis_server.stop()

        during = [writer.append(*offer(i, 100 + i)) for i in range(30)]
        assert all(r.appended and not r.redis_written for r in during)

        redis_server.start()
        tops = {p: stream.top(p) for p in range(settings.partitions)}
        for p in range(settings.partitions):
            assert tops[p] == sum(1 for r in before if r.partition == p) - 1

        proc = subprocess.run(
            [
                str(TRADELOG),
                "relay",
                "--until-caught-up",
                "--data-dir",
                str(settings.data_dir),
                "--redis-url",
                redis_url,
                "--partitions",
                str(settings.partitions),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "relay: copied 30 entries" in proc.stdout
        assert assert_level(settings, stream) == 50

        # The writer's next appends land in the stream again (after its 1 s breaker).
        after: list[AppendResult] = []

        def resumed() -> bool:
            after.append(writer.append(*offer(len(after), 200 + len(after))))
            return after[-1].redis_written

        wait_for(resumed, 10, "redis_written=True after the relay")
        later = [writer.append(*offer(i, 300 + i)) for i in range(8)]
        assert all(r.redis_written for r in later)
    assert_gapless(settings, before + during + after + later)
    relay = Relay(settings, stream)
    relay.run_once()  # only the appends made while the breaker was still open
    assert assert_level(settings, stream) == 58 + len(after)


@pytest.mark.parametrize("redis_data", ["kept", "lost"])
def test_writer_fills_a_small_gap_itself(
    redis_data: str,
    redis_server: RedisExecutor,
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
) -> None:
    """Without any relay, the first append after the breaker copies the missing entries."""
    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    account = ACCOUNTS[0]
    p = partition_of(account, settings.partitions)
    with Writer(settings) as writer:
        for n in range(5):
            assert writer.append(*offer(0, n)).redis_written
        if redis_data == "kept":
            redis_client.save()
            redis_server.stop()
        else:  # killed: no shutdown save, Redis restarts empty
            redis_server.stop(stop_signal=signal.SIGKILL)
        for n in range(5, 12):
            assert not writer.append(*offer(0, n)).redis_written
        redis_server.start()
        assert stream.top(p) == (4 if redis_data == "kept" else -1)

        def resumed() -> bool:
            return writer.append(*offer(0, 100)).redis_written

        wait_for(resumed, 10, "redis_written=True after the restart")
    assert assert_level(settings, stream) == len(file_log(settings, p))
    assert Relay(settings, stream).run_once().total == 0


def test_a_stream_whose_tail_was_deleted_by_hand_is_levelled_again(
    redis_client: redis.Redis, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    """Entries deleted by hand at a stream's end leave its last ID above its top, so XADD
    refuses their IDs: the writer (on its next append) and the relay set the last ID
    back to the top, then copy the missing entries again from the file log."""
    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    keys = Keys(settings.key_prefix)
    stream = StreamLog(redis_client, keys)
    p = partition_of(ACCOUNTS[0], settings.partitions)

    def delete_last(n: int) -> None:
        ids = [entry_id for entry_id, _ in redis_client.xrange(keys.log(p))]
        redis_client.xdel(keys.log(p), *ids[-n:])

    with Writer(settings) as writer:
        for n in range(6):
            assert writer.append(*offer(0, n)).redis_written
        delete_last(2)
        assert stream.top(p) == 3
        assert writer.append(*offer(0, 6)).redis_written  # filled in, the hole too
        assert assert_level(settings, stream) == 7
        delete_last(3)
    proc = subprocess.run(
        [
            str(TRADELOG), "relay", "--until-caught-up", "--data-dir", str(settings.data_dir),
            "--redis-url", redis_url, "--partitions", str(settings.partitions),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "relay: copied 3 entries" in proc.stdout
    assert keys.log(p) in proc.stderr  # it says what it found
    assert assert_level(settings, stream) == 7


def test_the_relay_copies_big_documents_a_few_at_a_time(
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bodies reach 16 MiB: one script call of thousands of them would outlast the Redis
    timeout and copy nothing, again and again. The relay sends a bounded number of bytes
    per call (and a document bigger than that alone)."""
    import eventlog.relay as relay

    monkeypatch.setattr(relay, "_BATCH_BYTES", 2500)
    settings = make_settings(redis_url="")  # file only: the stream is left empty
    account = ACCOUNTS[0]
    p = partition_of(account, settings.partitions)
    with Writer(settings) as writer:
        for n in range(6):
            kind, data = (
                "TradeOfferUpserted",
                {"offer": {"trade_offer_id": str(n), "x": "y" * 1000}},
            )
            writer.append(account, kind, data)
        writer.append(
            account, "TradeOfferUpserted", {"offer": {"trade_offer_id": "9", "x": "z" * 6000}}
        )
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    calls: list[int] = []
    real_append = stream.append

    def append(partition: int, events: list[StoredEvent]) -> None:
        calls.append(len(events))
        real_append(partition, events)

    monkeypatch.setattr(stream, "append", append)
    opened: list[int] = []
    real_cursor = relay.Cursor

    def cursor(*args: Any) -> Cursor:
        opened.append(args[2])
        return real_cursor(*args)

    monkeypatch.setattr(relay, "Cursor", cursor)
    assert Relay(settings, stream).level(p) == 7
    assert calls == [2, 2, 2, 1]
    assert opened == [0]  # one pass over the log: each read chunk sent in parts, not re-read
    assert assert_level(settings, stream) == 7


def batch_in_flight(settings: Settings, account: str) -> PartitionFile:
    """A writer mid-batch: the account's partition locked, one more event of the account
    written after what the log holds, not yet synced or sent to the stream."""
    p = partition_of(account, settings.partitions)
    batch = PartitionFile(settings.log_dir, p, settings.segment_bytes)
    assert batch.lock(wait=False)
    last = batch.catch_up()[-1]
    event = StoredEvent(
        str(uuid_utils.uuid7()), account, last.version + 1, p, last.offset + 1,
        "TradeOfferUpserted", last.ts, {"offer": {"trade_offer_id": "7"}},
    )  # fmt: skip
    batch.write(event.encode()[0], 1)
    return batch


def test_a_relay_beside_a_writer_leaves_each_batch_to_its_writer(
    redis_client: redis.Redis, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A relay reading the file while the writer syncs a batch used to copy it first,
    and the writer, finding its entries in the stream already, answered
    `redis_written: false` (in phase 2 the API then skips its read-your-writes wait)."""
    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    relay = Relay(settings, stream)
    stop = threading.Event()
    relaying = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle_s": 0})
    relaying.start()
    try:
        with Writer(settings) as writer:
            results = [writer.append(*offer(n, n)) for n in range(400)]
    finally:
        stop.set()
        relaying.join(timeout=30)
    assert not relaying.is_alive()
    assert [r.offset for r in results if not r.redis_written] == []
    assert assert_level(settings, stream) == 400


def test_the_relay_copies_no_batch_before_its_writer_is_done_with_it(
    redis_client: redis.Redis, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A batch written under the partition lock is not copied while the lock is held;
    cut off again (its sync failed), it never reaches the stream, and the event that
    takes its offset next is the one the stream gets."""
    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    relay = Relay(settings, stream, lock_wait_s=0)
    account = ACCOUNTS[0]
    p = partition_of(account, settings.partitions)
    with Writer(settings) as writer:
        for n in range(3):
            assert writer.append(*offer(0, n)).redis_written
    batch = batch_in_flight(settings, account)
    try:
        assert len(file_log(settings, p)) == 4
        assert relay.level(p) == 0  # its writer holds the lock: not final yet
        assert stream.top(p) == 2
        batch.cut_last_write()  # its sync failed
    finally:
        batch.close()  # lets the lock go
    assert relay.level(p) == 0
    assert stream.top(p) == 2
    with Writer(settings) as writer:
        again = writer.append(*offer(0, 9))
    assert (again.offset, again.redis_written) == (3, True)
    assert relay.level(p) == 0
    assert assert_level(settings, stream) == 4


def test_lines_cut_off_while_the_relay_waited_for_their_writer_are_not_copied(
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay read a batch, then waited for its writer, whose sync failed: the lines
    it read are no longer the log's, and it reads again from the stream's top."""
    import eventlog.relay as relay_module

    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    account = ACCOUNTS[0]
    p = partition_of(account, settings.partitions)
    with Writer(settings) as writer:
        assert writer.append(*offer(0, 0)).redis_written
    batch = batch_in_flight(settings, account)
    real_wait = relay_module.wait_for_writers

    def writer_fails(pdir: Path, wait_s: float) -> bool:
        batch.cut_last_write()  # while the relay waits: the sync failed
        batch.close()
        return real_wait(pdir, wait_s)

    monkeypatch.setattr(relay_module, "wait_for_writers", writer_fails)
    assert Relay(settings, stream).level(p) == 0
    assert stream.top(p) == 0
    assert assert_level(settings, stream) == 1


def test_a_burst_relay_goes_on_until_a_busy_writer_lets_its_partition_go(
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass that finds a partition's writer busy leaves it for the next pass, and a
    burst run (`relay --until-caught-up`) makes that pass: it ends level."""
    import eventlog.relay as relay_module

    settings = make_settings(redis_url="")  # file only: the streams are left empty
    with Writer(settings) as writer:
        for n in range(50):
            writer.append(*offer(n, n))
    held = sum(1 for p in range(settings.partitions) if file_log(settings, p))
    busy = [True] * 2 * held  # two passes find every partition's writer mid-batch

    def wait(pdir: Path, wait_s: float) -> bool:
        return not busy.pop() if busy else True

    monkeypatch.setattr(relay_module, "wait_for_writers", wait)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    relay = Relay(settings, stream)
    first = relay.run_once()
    assert (first.total, len(first.behind)) == (0, held)  # it says what it left
    assert relay.run(threading.Event(), until_caught_up=True, idle_s=0) == 50
    assert assert_level(settings, stream) == 50


def test_the_relay_keeps_its_place_in_each_partition_from_pass_to_pass(
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cursor is opened once per partition and moved on over what writers add to the
    stream: finding the stream's top afresh, each pass read the partition's segment
    from its start (256 MiB, several times a second for every partition)."""
    import eventlog.relay as relay_module

    settings = make_settings(redis_url=redis_url, redis_timeout_ms=5000)
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    opened: list[tuple[int, int]] = []
    real_cursor = relay_module.Cursor

    def cursor(*args: Any) -> Cursor:
        opened.append((args[1], args[2]))
        return real_cursor(*args)

    monkeypatch.setattr(relay_module, "Cursor", cursor)
    relay = Relay(settings, stream)
    stop = threading.Event()
    passes = 0
    real_pass = relay._pass

    def counted() -> Any:
        nonlocal passes
        passes += 1
        if passes == 30:
            stop.set()
        return real_pass()

    monkeypatch.setattr(relay, "_pass", counted)
    with Writer(settings) as writer:
        for n in range(40):  # the writer adds its own entries: the relay copies none
            assert writer.append(*offer(n, n)).redis_written
        relaying = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle_s": 0})
        relaying.start()
        for n in range(40, 80):
            assert writer.append(*offer(n, n)).redis_written
        relaying.join(timeout=30)
    assert not relaying.is_alive() and passes == 30
    assert sorted(p for p, _ in opened) == list(range(settings.partitions))  # once each
    assert assert_level(settings, stream) == 80


@pytest.mark.parametrize("change", ["redis restarted empty", "segment replaced"])
def test_a_kept_cursor_follows_the_stream_and_the_file_it_reads(
    change: str,
    redis_client: redis.Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
) -> None:
    """Between two passes, the stream may start again from nothing (Redis restarted
    empty) or the segment be put back by an operator (a new file at the same path):
    the next pass levels the stream with the file all the same."""
    settings = make_settings(redis_url="")  # file only: the relay copies everything
    account = ACCOUNTS[0]
    p = partition_of(account, settings.partitions)
    with Writer(settings) as writer:
        for n in range(3):
            writer.append(*offer(0, n))
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    relay = Relay(settings, stream)
    try:
        assert relay._pass().copied[p] == 3
        if change == "redis restarted empty":
            redis_client.flushall()
            expected = 5
        else:
            [segment] = partition_dir(settings.log_dir, p).glob("*.jsonl")
            copy = segment.with_suffix(".restored")
            copy.write_bytes(segment.read_bytes())
            os.replace(copy, segment)
            expected = 2
        with Writer(settings) as writer:
            for n in range(3, 5):
                writer.append(*offer(0, n))
        assert relay._pass().copied[p] == expected
    finally:
        relay.close()
    assert assert_level(settings, stream) == 5
