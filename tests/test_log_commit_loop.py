"""The commit loop: one round commits every partition that has commands waiting.

A partition whose lock another process holds is left to a later round, so the
other partitions' appends are not held up by it; and a round whose batches go
to their streams together still fills in a stream that was behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import thread as futures_thread
from contextlib import ExitStack, contextmanager
from pathlib import Path

import orjson
import pytest
import redis

from eventlog import commit_loop, state_file
from eventlog._exceptions import LogUnavailable
from eventlog.commands import AppendResult
from eventlog.committer import Committer
from eventlog.filelog import PartitionFile
from eventlog.keys import Keys
from eventlog.records import StoredEvent, partition_of
from eventlog.segments import partition_dir, segment_path
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from eventlog.writer import Writer

from .test_log_redis_outage import assert_level, wait_for

DEADLINE_S = 10.0


def account_in(partition: int, partitions: int, skip: int = 0) -> str:
    """The first SteamID64 (from a fixed start) that lives in `partition`, after `skip`
    others that do."""
    n = 76561199027634480
    while True:
        if partition_of(str(n), partitions) == partition:
            if not skip:
                return str(n)
            skip -= 1
        n += 1


def submit(writer: Writer, account: str, n: int) -> Future[AppendResult]:
    data = {"offer": {"trade_offer_id": str(n), "state": "Active"}}
    return writer.submit(writer.command(account, "TradeOfferUpserted", data))


@contextmanager
def held(settings: Settings, *partitions: int) -> Iterator[dict[int, PartitionFile]]:
    """The partitions' locks, taken as another process would take them."""
    with ExitStack() as stack:
        files = {}
        for p in partitions:
            pf = PartitionFile(settings.log_dir, p, settings.segment_bytes)
            stack.callback(pf.close)
            assert pf.lock(wait=False)
            files[p] = pf
        yield files


def test_a_partition_locked_elsewhere_does_not_hold_up_the_others(settings: Settings) -> None:
    P = settings.partitions
    busy, free = account_in(2, P), account_in(0, P)
    with Writer(settings) as writer, held(settings, 2) as locks:
        f_busy = submit(writer, busy, 1)  # first: a loop that waited for its lock would stall
        results = [submit(writer, free, n).result(timeout=DEADLINE_S) for n in range(2, 5)]
        assert [r.version for r in results] == [1, 2, 3]
        assert not f_busy.done()  # partition 2 is still locked by "the other process"
        locks[2].unlock()
        result = f_busy.result(timeout=DEADLINE_S)
    assert (result.version, result.partition, result.offset) == (1, 2, 0)


def test_batch_fsync_goes_on_while_a_partition_is_locked_elsewhere(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync=batch syncs a written partition within ~10 ms, whatever else waits."""
    settings = make_settings(fsync="batch")
    synced: list[int] = []
    sync = PartitionFile.sync

    def counted(self: PartitionFile) -> None:
        synced.append(self.partition)
        sync(self)

    monkeypatch.setattr(PartitionFile, "sync", counted)
    with Writer(settings) as writer:
        assert submit(writer, account_in(0, settings.partitions), 1).result(DEADLINE_S).appended
        with held(settings, 2) as locks:
            f_busy = submit(writer, account_in(2, settings.partitions), 2)
            wait_for(lambda: 0 in synced, DEADLINE_S, "partition 0's batch fsync")
            assert not f_busy.done()
            locks[2].unlock()
            f_busy.result(timeout=DEADLINE_S)


def test_a_round_fills_in_the_one_stream_that_was_behind(
    redis_client: redis.Redis, rsettings: Settings
) -> None:
    P = rsettings.partitions
    keys = Keys(rsettings.key_prefix)
    stream = StreamLog(redis_client, keys)
    accounts = [account_in(p, P) for p in range(P)]
    with Writer(rsettings) as writer:
        for i, account in enumerate(accounts):
            assert submit(writer, account, i).result(timeout=DEADLINE_S).redis_written
        # Partition 1's stream loses its entry: the next round finds it behind.
        redis_client.delete(keys.log(1))
        with held(rsettings, *range(P)) as locks:
            futures = [submit(writer, account, 100 + i) for i, account in enumerate(accounts)]
            futures += [submit(writer, account, 200 + i) for i, account in enumerate(accounts)]
            for p in reversed(range(P)):  # 0 last: the loop waits for it, then takes all
                locks[p].unlock()
            results = [f.result(timeout=DEADLINE_S) for f in futures]
    assert all(r.redis_written for r in results)
    assert [r.version for r in results] == [2] * P + [3] * P
    assert assert_level(rsettings, stream) == 3 * P


def test_an_append_its_caller_cancelled_does_not_stop_the_writer(settings: Settings) -> None:
    account = account_in(0, settings.partitions)
    with Writer(settings) as writer, held(settings, 0) as locks:
        cancelled = submit(writer, account, 1)
        assert cancelled.cancel()  # still queued: the loop waits for the lock
        locks[0].unlock()
        result = submit(writer, account, 2).result(timeout=DEADLINE_S)
    assert result.version == 2  # the cancelled one was appended all the same


def test_a_round_that_fails_unexpectedly_answers_its_callers_and_lets_the_locks_go(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = account_in(1, settings.partitions)

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the round")

    with Writer(settings) as writer:
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        monkeypatch.setattr(commit_loop, "RoundAdds", broken)
        with pytest.raises(RuntimeError, match="a bug in the round"):
            submit(writer, account, 2).result(timeout=DEADLINE_S)
        with held(settings, 1):  # the lock was let go
            pass
        monkeypatch.undo()
        # The failed round's line was cut off again: its caller was told it failed.
        assert submit(writer, account, 3).result(timeout=DEADLINE_S).version == 2


def test_a_partition_that_cannot_be_synced_nor_opened_again_fails_alone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync error on one partition, and its reopening failing too: its callers get the
    error; the round's other partitions commit, no lock stays held, the writer goes on
    (and opens the partition anew once it can)."""
    P = settings.partitions
    a0, a1, a2 = (account_in(p, P) for p in (0, 1, 2))
    broken = threading.Event()
    sync, init = PartitionFile.sync, PartitionFile.__init__

    def failing_sync(self: PartitionFile) -> None:
        if broken.is_set() and self.partition == 1:
            raise LogUnavailable("cannot fsync: EIO")
        sync(self)

    def failing_init(self: PartitionFile, log_dir: Path, p: int, segment_bytes: int) -> None:
        if broken.is_set() and p == 1:
            raise LogUnavailable("cannot open partition 1: EMFILE")
        init(self, log_dir, p, segment_bytes)

    monkeypatch.setattr(PartitionFile, "sync", failing_sync)
    monkeypatch.setattr(PartitionFile, "__init__", failing_init)
    with Writer(settings) as writer:
        for n, account in enumerate((a0, a1, a2)):
            assert submit(writer, account, n).result(timeout=DEADLINE_S).version == 1
        broken.set()
        with held(settings, 0) as locks:  # the next round takes 1 and 2 together
            f0, f1, f2 = (submit(writer, a, 10 + n) for n, a in enumerate((a0, a1, a2)))
            with pytest.raises(LogUnavailable, match="EIO"):
                f1.result(timeout=DEADLINE_S)
            assert f2.result(timeout=DEADLINE_S).version == 2
            with held(settings, 2):  # let go again
                pass
            locks[0].unlock()
            assert f0.result(timeout=DEADLINE_S).version == 2
        broken.clear()
        # The failed batch was cut off again before its lock was let go: it never counts.
        assert submit(writer, a1, 20).result(timeout=DEADLINE_S).version == 2


def test_a_partition_read_at_start_does_not_hold_up_the_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer reads a partition's command side before its first commit there, off its
    commit thread: a big partition's read (seconds, without a saved state) leaves the
    other partitions committing."""
    P = settings.partitions
    big, small = account_in(1, P), account_in(3, P)
    with Writer(settings) as writer:
        for n in range(20):
            submit(writer, big, n).result(timeout=DEADLINE_S)
    gate = threading.Event()
    warm = Committer.warm

    def slow(self: Committer) -> None:
        if self.p == 1:
            assert gate.wait(DEADLINE_S)
        warm(self)

    monkeypatch.setattr(Committer, "warm", slow)
    with Writer(settings) as writer:
        f_big = submit(writer, big, 100)
        assert submit(writer, small, 101).result(timeout=DEADLINE_S).version == 1
        assert not f_big.done()  # partition 1 is still being read
        gate.set()
        assert f_big.result(timeout=DEADLINE_S).version == 21


def test_lines_read_ahead_then_cut_off_are_read_anew_under_the_lock(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read ahead takes no lock: it can see the complete lines of another writer's
    batch whose write then fails and is cut off, and that writer's next batch can put a
    line of the same length in their place. The first batch checks under the lock that
    what was read ahead is still the log, and reads anew if it is not."""
    P = settings.partitions
    a, b, c = (account_in(1, P, skip) for skip in range(3))
    with Writer(settings) as writer:
        for n, account in enumerate((a, b, b, c)):  # offsets 0-3: a v1, b v1, b v2, c v1
            submit(writer, account, n).result(timeout=DEADLINE_S)
    pdir = partition_dir(settings.log_dir, 1)
    (pdir / state_file.NAME).unlink()  # a cold start: everything is read ahead
    segment = segment_path(pdir, 0)
    lines = segment.read_bytes().splitlines(keepends=True)
    real_id = orjson.loads(lines[2])["id"].encode()
    other_id = real_id[:-4] + (b"0000" if real_id[-4:] != b"0000" else b"1111")
    # "a v2", another event of the same length, where "b v2" will be.
    phantom = lines[2].replace(b.encode(), a.encode()).replace(real_id, other_id)
    assert len(phantom) == len(lines[2])
    segment.write_bytes(b"".join(lines[:2]) + phantom)  # what the read ahead sees
    read_ahead = PartitionFile.read_ahead

    def racing(self: PartitionFile) -> list[StoredEvent]:
        events = read_ahead(self)
        with segment.open("r+b") as f:  # the failed write is cut off...
            f.truncate(len(lines[0]) + len(lines[1]))
        with segment.open("ab") as f:  # ...and the other writer's next batch lands
            f.write(lines[2] + lines[3])
        return events

    monkeypatch.setattr(PartitionFile, "read_ahead", racing)
    with Writer(settings) as writer:
        data = {"offer": {"trade_offer_id": "9", "state": "Active"}}
        cmd = writer.command(a, "TradeOfferUpserted", data, expected_version=1)
        assert writer.submit(cmd).result(timeout=DEADLINE_S).version == 2  # a was at v1
        assert submit(writer, b, 5).result(timeout=DEADLINE_S).version == 3


def test_a_partition_is_read_on_the_loop_when_no_thread_can_be_started(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the interpreter is exiting, no new thread can read a partition ahead: the
    loop reads it itself rather than leave its commands waiting forever."""
    account = account_in(1, settings.partitions)
    with Writer(settings) as writer:
        monkeypatch.setattr(futures_thread, "_shutdown", True)
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        assert submit(writer, account, 2).result(timeout=DEADLINE_S).version == 2


def test_the_listeners_are_rung_before_the_sync(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file projector folds and writes while the lines are synced (it makes them
    durable itself before it puts anything in place); the answer still waits for the
    sync."""
    settings = make_settings(fsync="always")
    order: list[str] = []
    real_sync = PartitionFile.sync

    def sync(self: PartitionFile) -> None:
        order.append("sync")
        real_sync(self)

    monkeypatch.setattr(PartitionFile, "sync", sync)
    with Writer(settings) as writer:
        writer.append(account_in(0, settings.partitions), "TradeOfferUpserted",
                      {"offer": {"trade_offer_id": "1"}})  # fmt: skip
        real_ring = writer.ringer.ring

        def ring(payload: bytes = b"1") -> int:
            order.append("ring")
            rung.append(payload)
            return real_ring(payload)

        rung: list[bytes] = []
        monkeypatch.setattr(writer.ringer, "ring", ring)
        order.clear()
        result = submit(writer, account_in(1, settings.partitions), 2).result(DEADLINE_S)
        assert order == ["ring", "sync"]
        assert result.appended
        assert rung == [b"p1"]  # the ring names the partition written (see rung_partitions)
