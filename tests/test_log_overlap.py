"""Overlapping rounds: a round is answered only once the next one is staged.

Each test makes the next round on purpose: the hook below queues a command
from the commit thread as a round is sent to Redis, so the loop's next take
finds it and stages it before reading the first round's stream answers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import thread as futures_thread
from typing import Any

import pytest
import redis

from eventlog import commit_loop
from eventlog._exceptions import LogUnavailable
from eventlog.commands import AppendResult
from eventlog.committer import Committer, Staged
from eventlog.filelog import PartitionFile
from eventlog.keys import Keys
from eventlog.settings import Settings
from eventlog.stream_copy import RoundAdds
from eventlog.streamlog import Sent, StreamLog
from eventlog.writer import Writer

from .test_log_commit_loop import DEADLINE_S, account_in, held, submit
from .test_log_redis_outage import assert_level, file_log


def next_round_from(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], list[Future[AppendResult]]]
) -> list[Future[AppendResult]]:
    """The futures `make` queues, from the commit thread, when the first round after
    `commit_loop.RoundAdds.arm()` is sent to Redis: the round after it (filled in
    before that round is answered)."""
    made: list[Future[AppendResult]] = []
    armed: list[bool] = []

    class Hooked(RoundAdds):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            if armed and not made:
                made.extend(make())

    monkeypatch.setattr(commit_loop, "RoundAdds", Hooked)
    monkeypatch.setattr(Hooked, "arm", lambda: armed.append(True), raising=False)
    return made


def test_a_partition_of_two_overlapping_rounds_stays_locked_and_in_order(
    rsettings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    P = rsettings.partitions
    account = account_in(1, P)
    seen: list[tuple[int, bool, bool]] = []  # at each read: lines, first answered, lock free
    read = Sent.read
    writer = Writer(rsettings)

    def checked(self: Sent) -> list[bool]:
        other = PartitionFile(rsettings.log_dir, 1, rsettings.segment_bytes)
        try:
            seen.append((len(file_log(rsettings, 1)), first.done(), other.lock(wait=False)))
        finally:
            other.close()
        return read(self)

    with writer:
        first = submit(writer, account, 1)
        assert first.result(timeout=DEADLINE_S).version == 1
        made = next_round_from(monkeypatch, lambda: [submit(writer, account, 3)])
        monkeypatch.setattr(Sent, "read", checked)
        commit_loop.RoundAdds.arm()  # type: ignore[attr-defined]
        first = submit(writer, account, 2)
        r2 = first.result(timeout=DEADLINE_S)
        r3 = made[0].result(timeout=DEADLINE_S)
        with held(rsettings, 1):  # both rounds answered: the lock was let go
            pass
    # The first round is read with the second staged; the lock is held until both are.
    assert seen == [(3, False, False), (3, True, False)]
    assert (r2.version, r2.offset, r3.version, r3.offset) == (2, 1, 3, 2)
    assert r2.redis_written and r3.redis_written
    assert assert_level(rsettings, StreamLog(redis_client, Keys(rsettings.key_prefix))) == 3


def test_a_failed_sync_fails_only_its_own_round_not_the_one_it_overlaps(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = account_in(1, settings.partitions)
    sync = PartitionFile.sync
    syncs: list[int] = []

    def failing(self: PartitionFile) -> None:
        syncs.append(self.partition)
        if len(syncs) == 3:  # the third round's: the one staged over the second's
            raise LogUnavailable("cannot fsync: EIO")
        sync(self)

    monkeypatch.setattr(PartitionFile, "sync", failing)
    with Writer(settings) as writer:
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        made = next_round_from(monkeypatch, lambda: [submit(writer, account, 3)])
        commit_loop.RoundAdds.arm()  # type: ignore[attr-defined]
        assert submit(writer, account, 2).result(timeout=DEADLINE_S).version == 2
        with pytest.raises(LogUnavailable, match="EIO"):
            made[0].result(timeout=DEADLINE_S)
        assert len(file_log(settings, 1)) == 2  # the failed batch was cut off again
        assert submit(writer, account, 4).result(timeout=DEADLINE_S).version == 3


def test_a_bug_answering_a_round_cuts_the_next_one_off_and_lets_the_locks_go(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = account_in(1, settings.partitions)

    def broken(self: RoundAdds) -> list[bool]:
        raise RuntimeError("a bug answering a round")

    with Writer(settings) as writer:
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        made = next_round_from(monkeypatch, lambda: [submit(writer, account, 3)])
        monkeypatch.setattr(RoundAdds, "took", broken)
        commit_loop.RoundAdds.arm()  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match="a bug answering"):
            submit(writer, account, 2).result(timeout=DEADLINE_S)
        with pytest.raises(RuntimeError, match="a bug answering"):
            made[0].result(timeout=DEADLINE_S)
        with held(settings, 1):  # let go
            pass
        monkeypatch.undo()
        # The first of the two was synced and sent before the bug: it stays. The second,
        # staged over it, was cut off again, as a batch whose sync failed is.
        assert len(file_log(settings, 1)) == 2
        assert submit(writer, account, 4).result(timeout=DEADLINE_S).version == 3


def test_a_bug_after_a_round_is_sent_answers_it_as_it_went(
    rsettings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round synced and sent to its streams is answered, and its Redis connection goes
    back to the pool, whatever fails after it (here, counting it toward a save)."""
    account = account_in(1, rsettings.partitions)
    noted = Committer.noted

    def broken(self: Committer, staged: Staged) -> None:
        raise RuntimeError("a bug after the send")

    with Writer(rsettings) as writer:
        assert writer.stream is not None
        pool: Any = writer.stream.client.connection_pool
        assert submit(writer, account, 0).result(timeout=DEADLINE_S).redis_written
        monkeypatch.setattr(Committer, "noted", broken)
        results = [submit(writer, account, n).result(timeout=DEADLINE_S) for n in range(1, 4)]
        monkeypatch.setattr(Committer, "noted", noted)
        assert [(r.version, r.redis_written) for r in results] == [(2, True), (3, True), (4, True)]
        assert submit(writer, account, 9).result(timeout=DEADLINE_S).version == 5
        assert not pool._in_use_connections


def test_without_new_threads_a_round_syncs_on_the_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the interpreter exits, the pool takes no new work: an overlapping round's fsync
    runs on the loop's thread instead of failing it."""
    account = account_in(1, settings.partitions)
    with Writer(settings) as writer:
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        monkeypatch.setattr(futures_thread, "_shutdown", True)
        made = next_round_from(monkeypatch, lambda: [submit(writer, account, 3)])
        commit_loop.RoundAdds.arm()  # type: ignore[attr-defined]
        assert submit(writer, account, 2).result(timeout=DEADLINE_S).version == 2
        assert made[0].result(timeout=DEADLINE_S).version == 3
        monkeypatch.undo()
    assert len(file_log(settings, 1)) == 3


def test_an_answer_without_an_event_gives_the_version_it_was_decided_at(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal of no friend is answered with the account's version when it was decided,
    not the one a round staged after it has moved the account to."""
    P = settings.partitions
    account, other = account_in(1, P), account_in(1, P, skip=1)

    def remove(n: int) -> Future[AppendResult]:
        data = {"friend_steam_ids": [str(76561198000000000 + n)]}
        return writer.submit(writer.command(account, "FriendsRemoved", data))

    with Writer(settings) as writer:
        assert submit(writer, account, 1).result(timeout=DEADLINE_S).version == 1
        made = next_round_from(monkeypatch, lambda: [submit(writer, account, 3)])
        with held(settings, 1) as locks:  # both in one round: a write and a removal
            written = submit(writer, other, 2)
            removal = remove(1)
            commit_loop.RoundAdds.arm()  # type: ignore[attr-defined]
            locks[1].unlock()
            assert written.result(timeout=DEADLINE_S).version == 1
            result = removal.result(timeout=DEADLINE_S)
        assert (result.appended, result.version) == (False, 1)
        assert made[0].result(timeout=DEADLINE_S).version == 2
