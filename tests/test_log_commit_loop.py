"""The commit loop: one round commits every partition that has commands waiting.

A partition whose lock another process holds is left to a later round, so the
other partitions' appends are not held up by it; and a round whose batches go
to their streams together still fills in a stream that was behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager

import pytest
import redis

from eventlog import commit_loop
from eventlog.commands import AppendResult
from eventlog.filelog import PartitionFile
from eventlog.keys import Keys
from eventlog.records import partition_of
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from eventlog.writer import Writer

from .test_log_redis_outage import assert_level

DEADLINE_S = 10.0


def account_in(partition: int, partitions: int) -> str:
    """The first SteamID64 (from a fixed start) that lives in `partition`."""
    n = 76561199027634480
    while partition_of(str(n), partitions) != partition:
        n += 1
    return str(n)


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
    first, busy, free = (account_in(p, P) for p in (0, 2, 1))
    with Writer(settings) as writer, held(settings, 0, 2) as locks:
        # The loop waits for partition 0 (it holds no lock then) or passes it over; either
        # way the commands to 1 and 2 are queued before it can take 0.
        f_first = submit(writer, first, 1)
        f_busy = submit(writer, busy, 2)
        f_free = submit(writer, free, 3)
        locks[0].unlock()
        assert f_free.result(timeout=DEADLINE_S).version == 1
        assert f_first.result(timeout=DEADLINE_S).version == 1
        assert not f_busy.done()  # partition 2 is still locked by "the other process"
        locks[2].unlock()
        result = f_busy.result(timeout=DEADLINE_S)
    assert (result.version, result.partition, result.offset) == (1, 2, 0)


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

    def broken(*args: object) -> list[bool]:
        raise RuntimeError("a bug in the round")

    with Writer(settings) as writer:
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        monkeypatch.setattr(commit_loop, "add_all", broken)
        with pytest.raises(RuntimeError, match="a bug in the round"):
            submit(writer, account, 2).result(timeout=DEADLINE_S)
        with held(settings, 1):  # the lock was let go
            pass
        monkeypatch.undo()
        # The failed round's event reached the file: the writer read it back.
        assert submit(writer, account, 3).result(timeout=DEADLINE_S).version == 3
