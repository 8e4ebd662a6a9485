"""The Redis projection: it reassembles to the fold's bytes, applies nothing twice, and
parks only what it cannot apply (against a real redis-server)."""

from __future__ import annotations

import copy
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.reads import Reads
from eventlog import Writer
from eventlog._exceptions import AccountParked
from eventlog.keys import Keys
from eventlog.notify import PROGRESS, Bell
from eventlog.records import RULES, StoredEvent, partition_of, utc_ts
from eventlog.relay import Relay
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from projections.fold import Fold, apply, dumps, fold_all
from projections.redis_applier import RedisApplier
from projections.redis_calls import offers_call, save_call
from projections.redis_projector import RedisProjector
from projections.redis_reader import (
    account_version,
    read_document,
    read_document_json,
    read_fold,
    read_folds_apart,
)
from projections.redis_scripts import Status, status_of
from tests.conftest import SAMPLES_DIR
from tests.strategies import event_sequences

SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
ACCOUNT = "76561199027634480"
OTHER = "76561199027642399"
FRIEND = "76561198123456789"

MakeSettings = Callable[..., Settings]


# --- helpers (the fault tests import these too) ----------------------------------------------


def make_projector(
    settings: Settings, client: redis.Redis, name: str = "t", **kw: Any
) -> RedisProjector:
    kw.setdefault("lease_ms", 2000)
    kw.setdefault("claim_idle_ms", 100)
    kw.setdefault("freeze_gc", False)  # not in the test process
    return RedisProjector(settings, client, name, **kw)


def catch_up(*projectors: RedisProjector, batch: int = 1000, rounds: int = 10_000) -> int:
    """Step every projector until a full round handles nothing and nothing waits."""
    total = 0
    for _ in range(rounds):
        handled = [p.step(batch) for p in projectors]
        total += sum(handled)
        if not any(handled):
            if not any(p.waiting for p in projectors):
                return total
            for p in projectors:
                p.idle(0.01)  # waiting on another consumer or a claim: let time pass
    raise AssertionError("projectors did not catch up")


def take_leases(projector: RedisProjector, rounds: int = 2000) -> None:
    """Step a standby until it holds every partition it may (the others' leases expired)."""
    for _ in range(rounds):
        projector.step(1)
        if projector.consumer.held == set(projector.consumer.partitions):
            return
        projector.idle(0.02)
    raise AssertionError("the leases never came free")


def level(client: redis.Redis, settings: Settings) -> None:
    """Copy to the streams what the writer could not add in time (a busy test machine)."""
    Relay(settings, StreamLog(client, Keys(settings.key_prefix))).run_once()


def stream_events(client: redis.Redis, settings: Settings) -> list[StoredEvent]:
    """Every event of the streams, after the relay has levelled them with the file log."""
    log = StreamLog(client, Keys(settings.key_prefix))
    if settings.log_dir.exists():
        Relay(settings, log).run_once()
    out: list[StoredEvent] = []
    for p in range(settings.partitions):
        offset = 0
        while batch := log.read(p, offset, 5000):
            out += batch
            offset = batch[-1].offset + 1
    return out


def assert_matches_fold(client: redis.Redis, settings: Settings, events: list[StoredEvent]) -> None:
    keys = Keys(settings.key_prefix)
    folds = fold_all(events)
    for account, fold in folds.items():
        doc, version = read_document(client, keys, account)
        assert doc is not None, account
        assert dumps(doc) == dumps(fold.doc), account
        assert version == fold.doc["version"] == account_version(client, keys, account)
        assert read_fold(client, keys, account) == fold
    accounts = {m.decode() for m in client.smembers(keys.accounts())}
    assert accounts == set(folds)
    assert client.hlen(keys.parked()) == 0


def projection_state(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the projection with its content (not the log or bookkeeping)."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(f"{prefix}:*"):
        kind = client.type(key)
        if kind == b"hash" and b":progress:" not in key:
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
    return out


def event(
    kind: str, data: dict[str, Any], version: int, offset: int, account: str = ACCOUNT, p: int = 0
) -> StoredEvent:
    return StoredEvent(
        id=f"ev-{account}-{version}-{offset}",
        account=account,
        version=version,
        partition=p,
        offset=offset,
        type=kind,
        ts=utc_ts(),
        data=data,
        meta={"source": "test", "rules": RULES},
    )


def upsert(
    oid: str, version: int, offset: int, account: str = ACCOUNT, **fields: Any
) -> StoredEvent:
    return event(
        "TradeOfferUpserted", {"offer": {"trade_offer_id": oid, **fields}}, version, offset, account
    )


@pytest.fixture
def writer(rsettings: Settings) -> Iterator[Writer]:
    with Writer(rsettings) as w:
        yield w


# --- whole documents -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_legacy_samples_round_trip_through_redis(
    path: Path, rsettings: Settings, writer: Writer, redis_client: redis.Redis
) -> None:
    sample = orjson.loads(path.read_bytes())
    account = sample.get("account_steam_id") or ACCOUNT
    source = {"file": path.name, "sha256": "0" * 64}
    writer.append(
        account, "LegacyImported", {"document": sample, "source": source}, source="import"
    )
    writer.append(account, "NegotiationsSaved", copy.deepcopy(sample))
    projector = make_projector(rsettings, redis_client)
    level(redis_client, rsettings)
    catch_up(projector)
    assert_matches_fold(redis_client, rsettings, stream_events(redis_client, rsettings))
    # The import alone reads back as the file was, byte for byte.
    keys = Keys(rsettings.key_prefix)
    applier = RedisApplier(redis_client, Keys("fresh"))
    imported = stream_events(redis_client, rsettings)[0]
    applier.apply([imported])
    doc, version = read_document(redis_client, Keys("fresh"), account)
    assert dumps(doc or {}) == orjson.dumps({**sample, "version": 1})
    assert version == 1 and account_version(redis_client, keys, account) == 2


def test_empty_collections_and_reserved_names_round_trip(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    doc = {
        "_order": [],
        "_json": {},
        "__x": "",
        "_position": None,
        "position": {"x": 1},  # a client's own: the meta hash's `position` is the server's
        "our_inventory": [],
        "language": {},
        "account_username": "",
        "n": 1.5,
        "trade_offers": [
            {"trade_offer_id": "007", "items_to_give": [], "x": {}, "state_history": []},
            {"trade_offer_id": "7", "updated_at": None},
        ],
        "negotiations": {
            FRIEND: {"_order": "a", "_json": [], "messages": [], "language": {}, "__": 0},
            "76561198123456788": {},
        },
    }
    applier = RedisApplier(redis_client, Keys(rsettings.key_prefix))
    events = [
        event("NegotiationsSaved", copy.deepcopy(doc), 1, 0),
        upsert("7", 2, 1, extra=[]),
        event(
            "FriendNegotiationUpserted",
            {"friend_steam_id": FRIEND, "negotiation": {"_json": []}},
            3,
            2,
        ),
        event("FriendsRemoved", {"friend_steam_ids": ["76561198123456788"]}, 4, 3),
    ]
    for i in range(len(events)):
        applier.apply(events[i : i + 1])
        expected = fold_all(events[: i + 1])[ACCOUNT].doc
        got, _ = read_document(redis_client, Keys(rsettings.key_prefix), ACCOUNT)
        assert dumps(got or {}) == dumps(expected)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=event_sequences(ACCOUNT, max_size=10),
    second=event_sequences(OTHER, max_size=6),
    batch=st.integers(1, 8),
)
def test_random_sequences_project_to_the_fold(
    make_settings: MakeSettings,
    redis_url: str,
    redis_client: redis.Redis,
    first: list[tuple[str, dict[str, Any]]],
    second: list[tuple[str, dict[str, Any]]],
    batch: int,
) -> None:
    redis_client.flushdb()
    with tempfile.TemporaryDirectory() as data_dir:
        rsettings = make_settings(
            redis_url=redis_url, fsync="off", partitions=4, data_dir=data_dir, redis_timeout_ms=5000
        )
        projector = make_projector(rsettings, redis_client)
        with Writer(rsettings) as writer:
            mixed = [(ACCOUNT, c) for c in first]
            for i, c in enumerate(second):
                mixed.insert(2 * i + 1, (OTHER, c))
            for i, (account, (kind, data)) in enumerate(mixed):
                writer.append(account, kind, data, source="import")
                if i % 3 == 0:  # project while the log grows, in small batches
                    projector.step(batch)
        events = stream_events(redis_client, rsettings)
        catch_up(projector, batch=batch)
        assert_matches_fold(redis_client, rsettings, events)
        # Replaying everything into a fresh copy gives the same keys and bytes.
        before = projection_state(redis_client, rsettings.key_prefix)
        RedisApplier(redis_client, Keys(rsettings.key_prefix)).apply(events)
        assert projection_state(redis_client, rsettings.key_prefix) == before
        projector.close()


# --- nothing twice ---------------------------------------------------------------------------


def _mixed_history(account: str = ACCOUNT, start: int = 0) -> list[StoredEvent]:
    out = [
        upsert("1", 1, start, account, state="Active"),
        upsert("2", 2, start + 1, account, updated_at="2025-01-01T00:00:00Z"),
        upsert("1", 3, start + 2, account, state="Accepted"),
        event(
            "FriendNegotiationUpserted",
            {"friend_steam_id": FRIEND, "negotiation": {"n": 1}},
            4,
            start + 3,
            account,
        ),
        upsert("1", 5, start + 4, account, state="Declined"),
        event("FriendsRemoved", {"friend_steam_ids": [FRIEND]}, 6, start + 5, account),
        event(
            "NegotiationsSaved", {"trade_offers": [{"trade_offer_id": "9"}]}, 7, start + 6, account
        ),
        upsert("9", 8, start + 7, account, state="Accepted"),
    ]
    return out


def test_redelivery_has_no_effect(rsettings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rsettings.key_prefix)
    events = _mixed_history() + _mixed_history(OTHER, 8)
    applier = RedisApplier(redis_client, keys)
    out = applier.apply(events)
    assert out.applied == len(events) and not out.waiting and not out.parked
    state = projection_state(redis_client, rsettings.key_prefix)
    for again in (applier, RedisApplier(redis_client, keys)):  # warm and cold caches
        for chunk in (events, events[:3], events[2:9], events[5:], events[-1:]):
            out = again.apply(chunk)
            assert out.applied == 0 and len(out.handled) == len(chunk)
            assert projection_state(redis_client, rsettings.key_prefix) == state
    assert_matches_fold(redis_client, rsettings, events)


def test_a_partly_applied_batch_applies_only_the_rest(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rsettings.key_prefix)
    events = _mixed_history()
    RedisApplier(redis_client, keys).apply(events[:5])
    stale = RedisApplier(redis_client, keys)  # a cache from before: version 2
    stale.apply(events[:2])
    RedisApplier(redis_client, keys).apply(events[2:6])  # another consumer moved on
    out = stale.apply(events[2:])  # stale cache: refused, reloaded, the rest applied
    assert out.applied == 2 and len(out.handled) == 6
    assert_matches_fold(redis_client, rsettings, events)


def test_scripts_compare_and_set(rsettings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rsettings.key_prefix)
    applier = RedisApplier(redis_client, keys)
    events = [upsert("1", 1, 0), upsert("2", 2, 1), upsert("1", 3, 2, state="Accepted")]
    states: list[Fold | None] = [None]
    for e in events:
        states.append(apply(states[-1], e))
    run = applier.scripts.run

    def offers(base: int, to: int) -> Any:
        after = states[to]
        assert after is not None
        oid = events[to - 1].data["offer"]["trade_offer_id"]
        return offers_call(keys, ACCOUNT, states[base], after, [oid], base, f"0:{to - 1}")

    assert status_of(run([offers(0, 1)])[0]) == (Status.APPLIED, 1)
    snapshot = projection_state(redis_client, rsettings.key_prefix)
    assert status_of(run([offers(0, 1)])[0]) == (Status.ALREADY, 1)  # redelivered
    assert status_of(run([offers(2, 3)])[0]) == (Status.STALE, 1)  # computed from v2
    last = states[3]
    assert last is not None
    whole = save_call(keys, ACCOUNT, states[2], last, 2, "0:2")
    assert status_of(run([whole])[0]) == (Status.STALE, 1)
    assert projection_state(redis_client, rsettings.key_prefix) == snapshot
    assert status_of(run([offers(1, 2), offers(2, 3)])[0]) == (Status.APPLIED, 2)
    doc, version = read_document(redis_client, keys, ACCOUNT)
    assert version == 3 and dumps(doc or {}) == dumps(last.doc)
    meta = redis_client.hgetall(keys.meta(ACCOUNT))
    assert meta[b"position"] == b"0:2" and meta[b"version"] == b"3"  # as DESIGN names them


def test_small_cache_still_applies_correctly(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rsettings.key_prefix)
    accounts = [str(76561199027634480 + i) for i in range(6)]
    applier = RedisApplier(redis_client, keys, cache_size=2)
    events: list[StoredEvent] = []
    for v in range(1, 6):
        for i, a in enumerate(accounts):
            events.append(
                upsert(str(v % 3), v, len(events), a, state=["Active", "Accepted"][v % 2], n=i)
            )
    for i in range(0, len(events), 4):
        applier.apply(events[i : i + 4])
    assert_matches_fold(redis_client, rsettings, events)


# --- the projector ---------------------------------------------------------------------------


def test_projector_publishes_progress_and_rings(
    rsettings: Settings, writer: Writer, redis_client: redis.Redis
) -> None:
    keys = Keys(rsettings.key_prefix)
    results = [
        writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": str(i)}})
        for i in range(5)
    ]
    results.append(writer.append(OTHER, "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}}))
    bell = Bell(rsettings.run_dir, PROGRESS)
    try:
        projector = make_projector(rsettings, redis_client)
        level(redis_client, rsettings)
        assert catch_up(projector) == 6
        progress = redis_client.hgetall(keys.progress("redis"))
        for r in results:
            assert r.offset is not None
            assert int(progress[str(r.partition).encode()]) > r.offset
        assert int(progress[b"heartbeat"]) > 0
        rung = [orjson.loads(m) for m in bell.drain()]
        assert rung and rung[-1]["projector"] == "redis"
        assert {int(p): n for p, n in rung[-1]["positions"].items()} == {
            int(k): int(v) for k, v in progress.items() if k.isdigit()
        }
        before = int(progress[b"heartbeat"])
        time.sleep(0.002)
        projector.heartbeat()
        assert int(redis_client.hget(keys.progress("redis"), "heartbeat") or 0) > before
        projector.close()
    finally:
        bell.close()


def test_idle_returns_when_an_event_arrives(
    rsettings: Settings, writer: Writer, redis_client: redis.Redis
) -> None:
    projector = make_projector(rsettings, redis_client)
    assert catch_up(projector) == 0
    later = threading.Timer(
        0.2, writer.append, (ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    )
    later.start()
    started = time.monotonic()
    projector.idle(10.0)
    assert time.monotonic() - started < 5.0
    later.join()
    level(redis_client, rsettings)
    assert catch_up(projector) == 1
    projector.close()


def test_a_step_under_a_trickle_reads_the_streams_once(
    rsettings: Settings, writer: Writer, redis_client: redis.Redis
) -> None:
    """A read that comes back short has read every stream to its end: the step does not
    read again (under a trickle of writes, a round trip for nothing at every step)."""
    # No leases: one lapsing in a stall of the machine would be read again when taken.
    projector = make_projector(rsettings, redis_client, lease_ms=0)
    assert catch_up(projector) == 0
    for i in range(3):
        writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": str(i)}})
    level(redis_client, rsettings)
    redis_client.config_resetstat()
    assert projector.step(1000) == 3
    assert redis_client.info("commandstats")["cmdstat_xreadgroup"]["calls"] == 1
    assert catch_up(projector) == 0
    projector.close()


def test_two_consumers_without_leases_interleave_safely(
    rsettings: Settings, writer: Writer, redis_url: str
) -> None:
    """Both read every partition at once, in threads, while events are appended: an
    account's events land on both, and later ones wait for earlier ones (never park)."""
    clients = [redis.Redis.from_url(redis_url) for _ in range(3)]
    consumers = [
        make_projector(rsettings, clients[i], name, lease_ms=0, claim_idle_ms=60_000)
        for i, name in enumerate("ab")
    ]
    accounts = [ACCOUNT, OTHER, "76561199027650318"]
    stop = threading.Event()
    waited = [0, 0]

    def consume(i: int) -> None:
        while not stop.is_set():
            consumers[i].step(2 + i)
            waited[i] += consumers[i].waiting

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(300):
            offer = {"trade_offer_id": str(n % 4), "state": ["Active", "Accepted"][n % 2]}
            writer.append(accounts[n % 3], "TradeOfferUpserted", {"offer": offer})
            if n % 25 == 0:
                negotiation = {"friend_steam_id": FRIEND, "negotiation": {"n": n}}
                writer.append(accounts[n % 3], "FriendNegotiationUpserted", negotiation)
    finally:
        stop.set()
        for t in threads:
            t.join()
    level(clients[2], rsettings)
    catch_up(*consumers, batch=5)
    assert_matches_fold(clients[2], rsettings, stream_events(clients[2], rsettings))
    print("entries that waited for the other consumer:", waited)
    for c in clients:
        c.close()


def test_projectors_can_split_the_partitions(
    rsettings: Settings, writer: Writer, redis_url: str
) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(3)]
    accounts = [str(76561199027634480 + 7919 * i) for i in range(8)]
    for i in range(60):
        offer = {"trade_offer_id": str(i % 6), "state": ["Active", "Accepted"][i % 2]}
        writer.append(accounts[i % 8], "TradeOfferUpserted", {"offer": offer})
    level(clients[2], rsettings)
    halves = [
        make_projector(rsettings, clients[0], "low", partitions=[0, 1]),
        make_projector(rsettings, clients[1], "high", partitions=[2, 3]),
    ]
    catch_up(*halves, batch=7)
    assert [h.consumer.held for h in halves] == [{0, 1}, {2, 3}]
    assert_matches_fold(clients[2], rsettings, stream_events(clients[2], rsettings))
    for c in clients:
        c.close()


def test_scripts_lost_by_redis_are_loaded_again(
    rsettings: Settings, writer: Writer, redis_client: redis.Redis
) -> None:
    projector = make_projector(rsettings, redis_client)
    for round_no in range(3):
        for i in range(10):
            offer = {"trade_offer_id": str(i % 3), "n": round_no}
            writer.append([ACCOUNT, OTHER][i % 2], "TradeOfferUpserted", {"offer": offer})
        level(redis_client, rsettings)
        catch_up(projector, batch=4)
        redis_client.script_flush()  # as a restarted Redis with its data kept would be
    assert_matches_fold(redis_client, rsettings, stream_events(redis_client, rsettings))


def test_lease_hands_partitions_over(rsettings: Settings, writer: Writer, redis_url: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(3)]
    a = make_projector(rsettings, clients[0], "a", lease_ms=60_000)  # lapses only at close
    b = make_projector(rsettings, clients[1], "b")
    for i in range(40):
        writer.append(
            [ACCOUNT, OTHER][i % 2],
            "TradeOfferUpserted",
            {"offer": {"trade_offer_id": str(i % 5), "n": i}},
        )
    level(clients[2], rsettings)
    a.step(7)
    assert b.step(1000) == 0 and not b.consumer.held  # a holds every partition
    a.close()  # gives the leases back: b takes them at its next lease check
    take_leases(b)
    catch_up(b)
    assert b.consumer.held == set(range(rsettings.partitions))
    assert_matches_fold(clients[2], rsettings, stream_events(clients[2], rsettings))
    for c in clients:
        c.close()


def test_a_dead_consumers_lease_expires_and_its_entries_are_claimed(
    rsettings: Settings, writer: Writer, redis_url: str
) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(3)]
    keys = Keys(rsettings.key_prefix)
    for i in range(30):
        writer.append(
            [ACCOUNT, OTHER][i % 2],
            "TradeOfferUpserted",
            {"offer": {"trade_offer_id": str(i % 4), "n": i}},
        )
    level(clients[2], rsettings)
    dead = make_projector(rsettings, clients[0], "dead", lease_ms=300)
    dead.consumer.lease()
    dead.consumer.read(1000)  # delivered to "dead", never applied nor acknowledged
    live = make_projector(rsettings, clients[1], "live", lease_ms=300)
    take_leases(live)  # once dead's leases expire
    catch_up(live)  # claims dead's entries once they idled claim_idle_ms
    assert live.consumer.held == set(range(rsettings.partitions))
    for p in range(rsettings.partitions):
        assert clients[2].xpending(keys.log(p), keys.group())["pending"] == 0
    assert_matches_fold(clients[2], rsettings, stream_events(clients[2], rsettings))
    for c in clients:
        c.close()


def test_an_event_behind_anothers_pending_entry_waits(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rsettings.key_prefix)
    p = partition_of(ACCOUNT, rsettings.partitions)
    log = StreamLog(redis_client, keys)
    events = [upsert("1", v, v - 1, state=["Active", "Accepted"][v % 2]) for v in range(1, 5)]
    events = [StoredEvent(**{**e.to_dict(), "partition": p}) for e in events]
    log.append(p, events)
    b = make_projector(rsettings, redis_client, "b", lease_ms=0)
    b.consumer.xread({p: ">"}, 2)  # "b" has v1, v2 and goes quiet
    c = make_projector(rsettings, redis_client, "c", lease_ms=0, claim_idle_ms=60_000)
    assert c.step(100) == 0 and c.waiting == 2  # v3, v4: behind b's pending v1
    assert redis_client.hlen(keys.parked()) == 0
    assert account_version(redis_client, keys, ACCOUNT) == 0
    assert c.positions[p] == 0
    assert b.step(100) == 2  # b applies its own
    assert c.step(100) == 2 and c.waiting == 0
    assert c.positions[p] == 4
    assert_matches_fold(redis_client, rsettings, events)


# --- parking ---------------------------------------------------------------------------------


def _stream(
    client: redis.Redis, settings: Settings, events: Iterable[StoredEvent]
) -> list[StoredEvent]:
    """Put events straight on their partitions' streams (no file log): offsets assigned here."""
    log = StreamLog(client, Keys(settings.key_prefix))
    out: list[StoredEvent] = []
    for e in events:
        p = partition_of(e.account, settings.partitions)
        placed = StoredEvent(**{**e.to_dict(), "partition": p, "offset": log.top(p) + 1})
        log.append(p, [placed])
        out.append(placed)
    return out


def test_poison_event_parks_only_its_account_until_reapplied(
    rsettings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(rsettings.key_prefix)
    good = [upsert("1", v, 0, OTHER, state=["Active", "Accepted"][v % 2]) for v in range(1, 5)]
    bad = [
        upsert("1", 1, 0),
        upsert("2", 2, 0),
        upsert("3", 3, 0),
        upsert("1", 4, 0, state="Accepted"),
    ]
    placed = _stream(
        redis_client, rsettings, [x for pair in zip(bad, good, strict=True) for x in pair]
    )
    poison_id = next(e.id for e in placed if e.account == ACCOUNT and e.version == 2)

    import projections.redis_plan as applier_module

    def buggy(state: Fold | None, e: StoredEvent) -> Fold:
        if e.id == poison_id:
            raise RuntimeError("a bug in the fold")
        return apply(state, e)

    monkeypatch.setattr(applier_module, "apply", buggy)
    projector = make_projector(rsettings, redis_client)
    assert catch_up(projector, batch=3) == 8  # all handled: applied or parked, all acked
    assert account_version(redis_client, keys, OTHER) == 4
    assert account_version(redis_client, keys, ACCOUNT) == 1  # stopped before the poison
    record = projector.parked()[ACCOUNT]
    assert record["version"] == 2 and "a bug in the fold" in record["error"]
    reads = Reads(rsettings.model_copy(update={"phase": 2}))  # what a phase-2 GET asks
    try:
        why, version = reads.parked(ACCOUNT) or ("", 0)
        assert "a bug in the fold" in why and version == 4  # the last of 2, 3, 4 waiting
        assert reads.parked(OTHER) is None and reads.parked(OTHER, fresh=False) is None
    finally:
        reads.close()
    assert [e.version for e in projector.applier.parking.waiting(ACCOUNT)] == [2, 3, 4]
    # More events of the parked account wait behind it, in order.
    placed += _stream(redis_client, rsettings, [upsert("5", 5, 0)])
    assert catch_up(projector) == 1
    assert [e.version for e in projector.applier.parking.waiting(ACCOUNT)] == [2, 3, 4, 5]
    assert account_version(redis_client, keys, ACCOUNT) == 1
    with pytest.raises(AccountParked):  # still broken: stays parked
        projector.reapply_parked(ACCOUNT)
    assert ACCOUNT in projector.parked()
    monkeypatch.setattr(applier_module, "apply", apply)  # the fix is deployed
    assert projector.reapply_parked(ACCOUNT) == 4
    assert projector.parked() == {}
    assert not redis_client.exists(keys.parked_events(ACCOUNT))
    placed += _stream(redis_client, rsettings, [upsert("6", 6, 0)])
    catch_up(projector)  # live again: applied directly
    assert_matches_fold(redis_client, rsettings, placed)


def test_a_projection_damaged_by_hand_parks_only_its_account_until_mended(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    """A value that is not JSON (stored by hand) stopped the whole projector: now its
    account is parked, naming the damage, and every other account goes on."""
    keys = Keys(rsettings.key_prefix)
    placed = _stream(redis_client, rsettings, [upsert("1", 1, 0), upsert("1", 1, 0, OTHER)])
    projector = make_projector(rsettings, redis_client)
    assert catch_up(projector) == 2
    kept = redis_client.hget(keys.offers(ACCOUNT), "1")
    redis_client.hset(keys.offers(ACCOUNT), "1", "{not json")
    kept_order = redis_client.hget(keys.meta(OTHER), "_order")
    redis_client.hset(keys.meta(OTHER), "_order", "null")  # JSON, of another shape
    assert read_folds_apart(redis_client, keys, [ACCOUNT, OTHER, "76561199027650318"]) == (
        {"76561199027650318": None},
        {ACCOUNT: ANY, OTHER: ANY},
    )
    redis_client.hset(keys.meta(OTHER), "_order", kept_order)
    projector.applier.forget()  # as a projector started after the damage: nothing cached
    placed += _stream(redis_client, rsettings, [upsert("2", 2, 0), upsert("3", 3, 0)])
    # Two batches in flight: the second was planned before the first parked the account.
    assert catch_up(projector, batch=1) == 2
    placed += _stream(redis_client, rsettings, [upsert(str(v), v, 0, OTHER) for v in (2, 3)])
    assert catch_up(projector) == 2
    assert account_version(redis_client, keys, OTHER) == 3
    assert account_version(redis_client, keys, ACCOUNT) == 1
    record = projector.parked()[ACCOUNT]
    assert record["version"] == 2 and "is not JSON" in record["error"]
    assert [e.version for e in projector.applier.parking.waiting(ACCOUNT)] == [2, 3]
    with pytest.raises(AccountParked, match="is not JSON"):  # still damaged: stays parked
        projector.reapply_parked(ACCOUNT)
    assert [e.version for e in projector.applier.parking.waiting(ACCOUNT)] == [2, 3]
    redis_client.hset(keys.offers(ACCOUNT), "1", kept)  # mended (replay --account does it)
    assert projector.reapply_parked(ACCOUNT) == 2
    assert projector.parked() == {}
    assert_matches_fold(redis_client, rsettings, placed)


def test_version_gap_parks_and_is_reported(rsettings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rsettings.key_prefix)
    placed = _stream(
        redis_client,
        rsettings,
        [upsert("1", 1, 0), upsert("1", 3, 0, state="Accepted"), upsert("1", 1, 0, OTHER)],
    )
    projector = make_projector(rsettings, redis_client)
    assert catch_up(projector) == 3
    record = projector.parked()[ACCOUNT]
    assert record["version"] == 3 and "gap" in record["error"]
    assert account_version(redis_client, keys, ACCOUNT) == 1
    assert account_version(redis_client, keys, OTHER) == 1
    assert ACCOUNT in {k.decode() for k in redis_client.hkeys(keys.parked())}
    with pytest.raises(AccountParked, match="gap"):
        projector.reapply_parked(ACCOUNT)
    # The missing event turns up (e.g. repaired): re-applying now succeeds.
    missing = upsert("2", 2, 0)
    redis_client.delete(keys.parked_events(ACCOUNT))
    redis_client.rpush(
        keys.parked_events(ACCOUNT),
        orjson.dumps(missing.to_dict()),
        orjson.dumps(placed[1].to_dict()),
    )
    assert projector.reapply_parked(ACCOUNT) == 2
    assert account_version(redis_client, keys, ACCOUNT) == 3


# --- the reader ------------------------------------------------------------------------------


def _big_document(account: str) -> dict[str, Any]:
    items = [
        {
            "assetid": str(10**10 + i),
            "appid": 730,
            "contextid": "2",
            "amount": 1,
            "market_hash_name": f"Item {i}",
        }
        for i in range(4)
    ]
    offers = [
        {
            "trade_offer_id": str(8_000_000_000 + i),
            "friend_steam_id": FRIEND,
            "state": "Accepted",
            "is_our_offer": i % 2 == 0,
            "items_to_give": items,
            "items_to_receive": items[:2],
            "state_history": [
                {"state": "Active", "timestamp": "2025-01-01T00:00:00Z"},
                {"state": "Accepted", "timestamp": "2025-01-01T00:10:00Z"},
            ],
            "updated_at": f"2025-01-{1 + i % 28:02d}T00:00:00Z",
            "created_at": "2025-01-01T00:00:00Z",
        }
        for i in range(200)
    ]
    friends = {
        str(76561198123456789 + i): {
            "friend_steam_id": str(76561198123456789 + i),
            "state": "awaiting_reply",
            "followUpCount": i % 3,
            "messages": [
                {
                    "direction": "outgoing",
                    "message": "hello there " * 6,
                    "timestamp": "2025-01-01T00:00:00Z",
                }
            ]
            * 8,
            "inventory": items,
            "language": {"code": "en", "confidence": 0.9},
            "redirected_to": [],
        }
        for i in range(50)
    }
    return {
        "account_steam_id": account,
        "account_username": "bot",
        "our_inventory": items * 10,
        "trade_offers": offers,
        "negotiations": friends,
    }


@pytest.mark.parametrize("protocol", [2, 3])
def test_reader_reads_a_300kb_document_over_either_protocol(
    rsettings: Settings, redis_client: redis.Redis, redis_url: str, protocol: int
) -> None:
    """The reader decodes raw replies itself: RESP2's flat lists and RESP3's maps and
    pairs (the protocol is whatever TRADELOG_REDIS_URL asks for) give the same bytes."""
    keys = Keys(rsettings.key_prefix)
    doc = _big_document(ACCOUNT)
    e = event("NegotiationsSaved", doc, 1, 0)
    RedisApplier(redis_client, keys).apply([e])
    expected = dumps(apply(None, e).doc)
    assert len(expected) > 250_000
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    try:
        got, version = read_document(client, keys, ACCOUNT)
        assert version == 1 and dumps(got or {}) == expected
        assert read_document_json(client, keys, ACCOUNT) == (expected, 1)
        fold = read_fold(client, keys, ACCOUNT)
        assert fold is not None and fold.scores == apply(None, e).scores
    finally:
        client.close()


def test_reader_knows_no_unknown_account(rsettings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rsettings.key_prefix)
    assert read_document(redis_client, keys, ACCOUNT) == (None, 0)
    assert read_fold(redis_client, keys, ACCOUNT) is None
    assert account_version(redis_client, keys, ACCOUNT) == 0
