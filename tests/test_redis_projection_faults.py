"""The Redis projector under faults: killed with SIGKILL mid-batch while events keep
coming, taken over by another consumer, and Redis losing everything; each time the
projection ends equal to the fold, with nothing applied twice."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pytest_redis.executor import RedisExecutor

from eventlog import Writer
from eventlog._exceptions import RedisUnavailable
from eventlog.keys import Keys
from eventlog.settings import Settings
from tests.test_redis_projection import (
    assert_matches_fold,
    catch_up,
    level,
    make_projector,
    stream_events,
    take_leases,
)

PROCS = Path(__file__).parent / "procs"
ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(6)]
FRIENDS = [str(76561198123456789 + i) for i in range(3)]
STATES = ("Active", "Accepted", "Declined", "InEscrow")


class Appender:
    """Appends a mixed workload from a thread until stopped. Each upsert moves an offer
    to another state, so an upsert applied twice would leave an extra history entry."""

    def __init__(self, writer: Writer, seed: int) -> None:
        self.writer = writer
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> None:
        rng, n = self.rng, self.count
        account = rng.choice(ACCOUNTS)
        roll = rng.random()
        if roll < 0.7:
            offer = {"trade_offer_id": str(n % 9), "state": STATES[n % 4], "n": n}
            self.writer.append(account, "TradeOfferUpserted", {"offer": offer})
        elif roll < 0.85:
            record = {"state": "awaiting_reply", "followUpCount": n, "messages": []}
            data = {"friend_steam_id": rng.choice(FRIENDS), "negotiation": record}
            self.writer.append(account, "FriendNegotiationUpserted", data)
        elif roll < 0.95:
            data = {"friend_steam_ids": rng.sample(FRIENDS, 2)}
            self.writer.append(account, "FriendsRemoved", data)
        else:
            doc = {"account_username": f"bot{n}", "trade_offers": [{"trade_offer_id": "1"}]}
            self.writer.append(account, "NegotiationsSaved", doc)
        self.count += 1

    def _run(self) -> None:
        while not self.stop.is_set():
            self._one()

    def __enter__(self) -> Appender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _spawn(
    settings: Settings, consumer: str, lease_ms: int, claim_ms: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(PROCS / "redis_projector_loop.py"),
            settings.redis_url,
            str(settings.data_dir),
            str(settings.partitions),
            settings.key_prefix,
            consumer,
            "7",  # small batches: a kill lands between the scripts and the XACK often
            str(lease_ms),
            str(claim_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _lines(proc: subprocess.Popen[bytes], want: int, timeout: float = 30.0) -> None:
    """Wait until the child printed `want` more lines (it is then busy with batches)."""
    assert proc.stdout is not None
    fd, seen, deadline = proc.stdout.fileno(), 0, time.monotonic() + timeout
    while seen < want:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("the projector printed nothing in time")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError("the projector exited")
        seen += chunk.count(b"\n")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            _kill(proc)


def _applied_but_unacked(client: redis.Redis, settings: Settings) -> int:
    """Pending entries whose event the projection already holds: a kill between the
    scripts and the XACK, which the restarted projector must skip, not apply again."""
    keys = Keys(settings.key_prefix)
    found = 0
    for p in range(settings.partitions):
        for entry in client.xpending_range(keys.log(p), keys.group(), "-", "+", 1000):
            eid = entry["message_id"]
            (_, fields), *_ = client.xrange(keys.log(p), eid, eid)
            held = client.hget(keys.meta(fields[b"account"].decode()), "version")
            found += held is not None and int(held) >= int(fields[b"version"])
    return found


@pytest.mark.slow
def test_sigkill_mid_batch_twenty_times_loses_and_doubles_nothing(
    rsettings: Settings, redis_client: redis.Redis, procs: list[subprocess.Popen[bytes]]
) -> None:
    rng = random.Random(7)
    unacked = 0
    with Writer(rsettings) as writer, Appender(writer, 1):
        for _ in range(20):
            proc = _spawn(rsettings, "p1", 10_000, 30_000)  # same name: takes its entries back
            procs.append(proc)
            _lines(proc, rng.randrange(5, 60))  # "ready", then some batches
            time.sleep(rng.random() * 0.005)  # fault timing, not synchronisation
            _kill(proc)
            unacked += _applied_but_unacked(redis_client, rsettings)
    assert unacked > 0  # some kills did land between applying and acknowledging
    level(redis_client, rsettings)
    projector = make_projector(rsettings, redis_client, "p1", lease_ms=10_000, claim_idle_ms=30_000)
    catch_up(projector)
    events = stream_events(redis_client, rsettings)
    assert len(events) > 100
    assert_matches_fold(redis_client, rsettings, events)
    keys = Keys(rsettings.key_prefix)
    progress = redis_client.hgetall(keys.progress("redis"))
    for p in range(rsettings.partitions):
        assert redis_client.xpending(keys.log(p), keys.group())["pending"] == 0
        top = max((e.offset for e in events if e.partition == p), default=-1)
        if top >= 0:
            assert int(progress[str(p).encode()]) == top + 1


@pytest.mark.slow
def test_another_consumer_takes_over_a_killed_ones_entries(
    rsettings: Settings, redis_client: redis.Redis, procs: list[subprocess.Popen[bytes]]
) -> None:
    with Writer(rsettings) as writer, Appender(writer, 2):
        proc = _spawn(rsettings, "dead", 400, 200)
        procs.append(proc)
        _lines(proc, 4)
        _kill(proc)  # its leases run out in 400 ms; its pending entries idle from now on
    level(redis_client, rsettings)
    live = make_projector(rsettings, redis_client, "live", lease_ms=400, claim_idle_ms=200)
    take_leases(live)
    catch_up(live)
    keys = Keys(rsettings.key_prefix)
    for p in range(rsettings.partitions):
        summary = redis_client.xpending(keys.log(p), keys.group())
        assert summary["pending"] == 0
    assert_matches_fold(redis_client, rsettings, stream_events(redis_client, rsettings))


def test_redis_losing_everything_is_rebuilt_from_the_log(
    rsettings: Settings, redis_server: RedisExecutor, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    projector = make_projector(rsettings, client, "p1")
    with Writer(rsettings) as writer:
        for i in range(40):
            offer = {"trade_offer_id": str(i % 5), "state": STATES[i % 4]}
            writer.append(ACCOUNTS[i % 3], "TradeOfferUpserted", {"offer": offer})
        catch_up(projector)
        # Killed: no save on shutdown, so streams, projection and groups are gone.
        redis_server.stop(stop_signal=signal.SIGKILL)
        with pytest.raises(RedisUnavailable):
            projector.step(100)
        redis_server.start()
        for i in range(10):  # file log first: the writer cannot reach the stream yet
            writer.append(ACCOUNTS[i % 3], "TradeOfferUpserted", {"offer": {"trade_offer_id": "9"}})
    level(client, rsettings)  # the relay refills the streams from the file log
    catch_up(projector)
    assert_matches_fold(client, rsettings, stream_events(client, rsettings))
    client.close()


def test_redis_flushed_under_a_projector_mid_catch_up_is_rebuilt_with_nothing_parked(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    """A FLUSHALL (or a restart without persistence the client reconnects through)
    while the projector holds account states it read: those states are void. Kept, the
    events copied again passed for redeliveries up to them, and the next one parked its
    account for a gap against the empty projection."""
    keys = Keys(rsettings.key_prefix)
    projector = make_projector(rsettings, redis_client, "p1")
    with Writer(rsettings) as writer:
        for i in range(60):
            offer = {"trade_offer_id": str(i % 5), "state": STATES[i % 4]}
            writer.append(ACCOUNTS[i % 3], "TradeOfferUpserted", {"offer": offer})
    for _ in range(3):
        projector.step(10)  # part of the way: every account's state cached
    redis_client.flushall()
    level(redis_client, rsettings)  # the relay copies the streams in again
    catch_up(projector, batch=10)
    assert redis_client.hlen(keys.parked()) == 0
    assert_matches_fold(redis_client, rsettings, stream_events(redis_client, rsettings))


@pytest.mark.parametrize("claim_due", [False, True], ids=["read-first", "claim-first"])
def test_redis_flushed_under_two_projectors_sharing_the_partitions_loses_nothing(
    rsettings: Settings, redis_client: redis.Redis, claim_due: bool
) -> None:
    """Only the first to read after the flush meets the missing group and makes it
    again: the other must still tell that what it knew of Redis is gone (the group
    gives it entries it had been given before). The first meets it in its read, or
    in its claim of idle entries when one is due (which read on, and lost, the
    entries the new group gave it: versions gaps parked every account)."""
    keys = Keys(rsettings.key_prefix)
    for p in range(rsettings.partitions):  # p1 holds half the partitions, p2 the rest
        redis_client.set(keys.lease(p), "p1" if p < 2 else "p2", px=60_000)
    p1 = make_projector(rsettings, redis_client, "p1", lease_ms=60_000)
    p2 = make_projector(rsettings, redis_client, "p2", lease_ms=60_000)
    with Writer(rsettings) as writer:
        for i in range(120):
            offer = {"trade_offer_id": str(i % 5), "state": STATES[i % 4]}
            writer.append(ACCOUNTS[i % 6], "TradeOfferUpserted", {"offer": offer})
    catch_up(p1, p2, batch=20)
    assert p1.consumer.held == {0, 1} and p2.consumer.held == {2, 3}
    with Writer(rsettings) as writer:  # more, so that both have states cached
        for i in range(24):
            writer.append(ACCOUNTS[i % 6], "TradeOfferUpserted", {"offer": {"trade_offer_id": "7"}})
    redis_client.flushall()
    level(redis_client, rsettings)
    for p in range(rsettings.partitions):  # (the flush took the leases too)
        redis_client.set(keys.lease(p), "p1" if p < 2 else "p2", px=60_000)
    if claim_due:
        p1.consumer._claim_due.clear()
    else:
        p1.consumer._claim_due = dict.fromkeys(range(rsettings.partitions), float("inf"))
    p1.step(20)  # meets the missing group first, and makes it again on every stream
    catch_up(p1, p2, batch=20)
    assert_matches_fold(redis_client, rsettings, stream_events(redis_client, rsettings))
