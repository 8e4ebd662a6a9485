"""`tradelog replay`: a rebuild from the log equals what the live projectors built, byte for
byte; the daemons go on from the log end without applying anything twice; parked
accounts are rebuilt and unparked; a running projector is never raced."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import orjson
import pytest
import redis
from hypothesis import strategies as st

from eventlog import Writer
from eventlog._exceptions import ProjectorBusy
from eventlog.keys import Keys
from eventlog.settings import Settings, load_settings
from projections.checkpoint import read_checkpoint
from projections.file_health import parked
from projections.file_parking import read_park
from projections.replay import log_ends, rebuild, replay_accounts
from projections.snapshots import snapshot_path
from tests.conftest import SAMPLES_DIR
from tests.test_file_projection import assert_matches_fold, catch_up, logs
from tests.test_redis_projection import catch_up as catch_up_redis
from tests.test_redis_projection import make_projector

SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(12)]
FRIENDS = [str(76561198123456789 + 31 * i) for i in range(6)]
TRADELOG = str(Path(sys.executable).with_name("tradelog"))

MakeSettings = Callable[..., Settings]


# --- helpers (the verify tests import these too) ---------------------------------------------


def fill(s: Settings, rounds: int = 120, seed: int = 1, accounts: list[str] = ACCOUNTS) -> None:
    """A seeded mix of every event type, through the writer (so every event is valid):
    legacy imports of the sample documents, offer upserts (new, state changes, odd
    timestamps), friend upserts and removals, whole-document saves."""
    rng = random.Random(seed)
    with Writer(s) as writer:
        for path, account in zip(SAMPLES, accounts, strict=False):
            document = orjson.loads(path.read_bytes())
            document["account_steam_id"] = account
            source = {"file": path.name, "sha256": f"{seed:064x}"}
            writer.append(account, "LegacyImported", {"document": document, "source": source})
        for i in range(rounds):
            account = rng.choice(accounts)
            writer.append(account, *_event(rng, i))


def _event(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    r = rng.random()
    if r < 0.6:
        offer: dict[str, Any] = {"trade_offer_id": str(8_000_000 + rng.randrange(40))}
        offer["state"] = rng.choice(["Active", "Accepted", "Declined", 3, "Unknown(12)"])
        stamp = rng.choice([None, "2025-09-01T10:00:00.000Z", str(1_756_000_000 + i), 17e8])
        if stamp is not None:
            offer["updated_at"] = stamp  # None: scored by the event's time
        if rng.random() < 0.3:
            offer["items_to_give"] = [{"assetid": str(i), "amount": 1}] if i % 2 else []
        return "TradeOfferUpserted", {"offer": offer}
    if r < 0.8:
        friend = rng.choice(FRIENDS)
        record = {"state": rng.choice(["awaiting_reply", "closed"]), "followUpCount": i % 4,
                  "messages": [{"message": "hi", "ts": i}] * (i % 3), "language": None}  # fmt: skip
        return "FriendNegotiationUpserted", {"friend_steam_id": friend, "negotiation": record}
    if r < 0.9:
        return "FriendsRemoved", {"friend_steam_ids": rng.sample(FRIENDS, 2)}
    doc: dict[str, Any] = {"account_username": f"bot{i}", "our_inventory": [] if i % 2 else None,
           "_tradelog": {"client": i}, "trade_offers": [], "negotiations": {}}  # fmt: skip
    return "NegotiationsSaved", doc


def snapshot_files(s: Settings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(s.snapshot_dir.glob("*.json"))}


def redis_contents(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the Redis projection (not the streams, nor the projector's bookkeeping)."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*"):
        if key.startswith((f"{prefix}:log:".encode(), f"{prefix}:progress:".encode())):
            continue
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = client.smembers(key)
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
        else:
            out[key] = client.get(key)
    return out


def project_redis(s: Settings, client: redis.Redis) -> int:
    """Run a Redis projector until caught up, then stop it as a daemon stops."""
    projector = make_projector(s, client)
    try:
        return catch_up_redis(projector)
    finally:
        projector.close()


def stopped_long_ago(client: redis.Redis, s: Settings) -> None:
    """Make the Redis projector's last heartbeat look old (as after a stop, minutes later)."""
    key = Keys(s.key_prefix).progress("redis")
    client.hdel(key, *(f for f in client.hkeys(key) if f.startswith(b"heartbeat")))


def cli(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRADELOG_DATA_DIR": str(s.data_dir),
        "TRADELOG_REDIS_URL": s.redis_url,
        "TRADELOG_PARTITIONS": str(s.partitions),
        "TRADELOG_FSYNC": s.fsync,
        "TRADELOG_KEY_PREFIX": s.key_prefix,
    }
    env.pop("TRADELOG_CONFIG", None)
    return subprocess.run(
        [TRADELOG, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def rs(make_settings: MakeSettings, redis_url: str) -> Settings:
    return make_settings(redis_url=redis_url, fsync="off", redis_timeout_ms=5000)


# --- equal to the live projections ------------------------------------------------------------


def test_file_replay_equals_the_live_projection_byte_for_byte(
    make_settings: MakeSettings,
) -> None:
    s = make_settings(fsync="off")
    fill(s)
    catch_up(s, batch=7)  # the daemon, in small batches, until caught up
    live = snapshot_files(s)
    for path in s.snapshot_dir.glob("*.json"):
        path.unlink()
    done = cli(s, "replay", "file", "--json")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["events"] == sum(log_ends(s).values()) and summary["accounts"] == 12
    assert snapshot_files(s) == live
    assert read_checkpoint(s).positions == log_ends(s)
    # The daemon goes on from the log end: nothing applied twice, new events applied.
    assert catch_up(s).applied == 0
    before = sum(log_ends(s).values())
    fill(s, rounds=10, seed=2)
    again = catch_up(s)
    assert (again.applied, again.skipped) == (sum(log_ends(s).values()) - before, 0)
    assert_matches_fold(s)


def test_redis_replay_equals_the_live_projection_byte_for_byte(
    rs: Settings, redis_client: redis.Redis
) -> None:
    from projections.redis_reader import read_document_json

    fill(rs)
    project_redis(rs, redis_client)
    live = redis_contents(redis_client, rs.key_prefix)
    docs = {a: read_document_json(redis_client, Keys(rs.key_prefix), a) for a in ACCOUNTS}
    redis_client.hset(Keys(rs.key_prefix).meta(ACCOUNTS[0]), "junk", "left from before")
    stopped_long_ago(redis_client, rs)
    report = rebuild(rs, ("redis",), workers=2)  # two worker processes
    assert report.events == sum(log_ends(rs).values())
    assert {a: read_document_json(redis_client, Keys(rs.key_prefix), a) for a in ACCOUNTS} == docs
    assert redis_contents(redis_client, rs.key_prefix) == live
    # The projector's group skips what was replayed and takes what comes next.
    assert project_redis(rs, redis_client) == 0
    before = sum(log_ends(rs).values())
    fill(rs, rounds=10, seed=2)
    assert project_redis(rs, redis_client) == sum(log_ends(rs).values()) - before


def test_replay_all_feeds_both_projections_from_one_pass(
    rs: Settings, redis_client: redis.Redis
) -> None:
    fill(rs, rounds=60)
    catch_up(rs)
    project_redis(rs, redis_client)
    files, keys = snapshot_files(rs), redis_contents(redis_client, rs.key_prefix)
    stopped_long_ago(redis_client, rs)
    report = rebuild(rs, ("file", "redis"))
    assert set(report.write_seconds) == {"file", "redis"}
    assert snapshot_files(rs) == files
    assert redis_contents(redis_client, rs.key_prefix) == keys


# --- never racing a running projector ---------------------------------------------------------


def test_replay_refuses_while_a_projector_runs(rs: Settings, redis_client: redis.Redis) -> None:
    fill(rs, rounds=10)
    projector = make_projector(rs, redis_client)
    catch_up_redis(projector)  # running: it holds its leases, its heartbeat is fresh
    try:
        done = cli(rs, "replay", "redis")
        assert done.returncode == 2 and "a Redis projector is running" in done.stderr
        assert rebuild(rs, ("redis",), force=True).events == sum(log_ends(rs).values())
    finally:
        projector.close()
    from projections.file_projector import FileProjector

    daemon = FileProjector(rs)  # holds the file projection's lock while it lives
    try:
        with pytest.raises(ProjectorBusy):
            rebuild(rs, ("file",))
        done = cli(rs, "replay", "file")
        assert done.returncode == 2 and "another process projects files" in done.stderr
    finally:
        daemon.close()


def test_replay_runs_right_after_a_bounded_projector_exits(
    rs: Settings, redis_client: redis.Redis
) -> None:
    fill(rs, rounds=30)
    for args in (("relay",), ("project", "redis"), ("project", "file")):
        done = cli(rs, *args, "--until-caught-up")
        assert done.returncode == 0, done.stderr
    live = redis_contents(redis_client, rs.key_prefix)
    # At once, within the heartbeat's freshness: the projector said it stopped.
    done = cli(rs, "replay", "redis")
    assert done.returncode == 0, done.stderr
    assert redis_contents(redis_client, rs.key_prefix) == live


def freeze_beats_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, heartbeats are as old as they are now: a stall of a loaded machine
    does not age a live one past its freshness."""
    import projections.redis_progress as progress

    frozen = progress.now_ms()
    monkeypatch.setattr(progress, "now_ms", lambda: frozen)


def test_one_projector_stopping_does_not_hide_a_live_standby(
    rs: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from projections.redis_progress import projector_activity

    fill(rs, rounds=10)
    keys = Keys(rs.key_prefix)
    a = make_projector(rs, redis_client, name="a", lease_ms=60_000)  # lapses only at close
    catch_up_redis(a)
    b = make_projector(rs, redis_client, name="b")
    try:
        b.step(100)  # a standby: a holds every lease
        assert not b.consumer.held
        b.heartbeat()  # b is alive, and beat last
        freeze_beats_clock(monkeypatch)
        a.close()  # a stops cleanly after b's beat: its leases go, its stop is recorded
        assert projector_activity(redis_client, keys, rs.partitions) is not None
    finally:
        b.close()
    # b stopped too, after its last beat: nothing runs now.
    assert projector_activity(redis_client, keys, rs.partitions) is None


def test_a_group_whose_processes_stop_in_any_order_is_seen_stopped(
    rs: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`project redis` runs one process per CPU, each beating and stopping on its own:
    a beat of one can land between another's beat and its stop."""
    from projections.redis_progress import projector_activity

    fill(rs, rounds=10)
    keys = Keys(rs.key_prefix)
    half = [p for p in range(rs.partitions) if p % 2 == 0]
    a = make_projector(rs, redis_client, name="a", partitions=half)
    b = make_projector(
        rs, redis_client, name="b", partitions=[p for p in range(rs.partitions) if p % 2]
    )
    catch_up_redis(a)
    catch_up_redis(b)
    a.heartbeat()
    b.heartbeat()  # b beat last
    freeze_beats_clock(monkeypatch)
    b.close()
    assert projector_activity(redis_client, keys, rs.partitions) is not None  # a still runs
    a.close()  # the last stop is a's, the last beat b's: both stopped after their beats
    assert projector_activity(redis_client, keys, rs.partitions) is None
    fields = redis_client.hkeys(keys.progress("redis"))
    assert not [f for f in fields if f.startswith(b"heartbeat:")]  # a stop drops its beat


def test_a_clean_stop_recorded_before_per_consumer_fields_still_counts() -> None:
    from projections.checkpoint import now_ms
    from projections.redis_progress import beating

    beat = now_ms()
    old = {"heartbeat": beat, "heartbeat_by": "h-0", "stopped": beat, "stopped_by": "h-0"}
    assert beating({k.encode(): str(v).encode() for k, v in old.items()}) is None
    assert beating({**old, "stopped_by": "h-1"}) is not None  # another's stop: h-0 beats


def test_live_redis_replay_swaps_in_an_equal_copy_and_leaves_no_fresh_keys(
    rs: Settings, redis_client: redis.Redis
) -> None:
    fill(rs)
    project_redis(rs, redis_client)
    live = redis_contents(redis_client, rs.key_prefix)
    # A hand-made difference: the rebuilt copy must replace it, not keep it.
    redis_client.hset(Keys(rs.key_prefix).meta(ACCOUNTS[0]), "junk", "left from before")
    done = cli(rs, "replay", "redis", "--live", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "live"
    assert redis_contents(redis_client, rs.key_prefix) == live
    leftovers = [k for k in redis_client.scan_iter(match=f"{rs.key_prefix}-replay-*")]
    assert leftovers == []


def test_live_redis_replay_beside_a_running_projector_and_writers(
    rs: Settings, redis_client: redis.Redis
) -> None:
    from projections.daemon import run
    from projections.fold import dumps, fold_all
    from projections.redis_reader import read_document_json
    from projections.replay_live_redis import replay_redis_live
    from tests.test_file_projection import log_events

    fill(rs)
    project_redis(rs, redis_client)
    stop = threading.Event()
    projector = make_projector(rs, redis.Redis.from_url(rs.redis_url))
    daemon_thread = threading.Thread(target=run, args=(projector, stop), daemon=True)
    daemon_thread.start()
    writer = threading.Thread(target=fill, args=(rs, 40, 7), daemon=True)
    writer.start()
    try:
        report = replay_redis_live(rs)
    finally:
        writer.join(timeout=60)
        stop.set()
        daemon_thread.join(timeout=60)
    assert not writer.is_alive() and not daemon_thread.is_alive()
    assert report.accounts == len(ACCOUNTS)
    assert set(report.write_seconds) == {"redis"}  # shown beside the fold time
    project_redis(rs, redis_client)  # whatever came after the swap
    folds = fold_all(log_events(rs))
    keys = Keys(rs.key_prefix)
    for account, fold in folds.items():
        raw, version = read_document_json(redis_client, keys, account)
        assert version == fold.doc["version"], account
        assert raw == dumps(fold.doc), account
    assert [k for k in redis_client.scan_iter(match=f"{rs.key_prefix}-replay-*")] == []


# --- parked accounts --------------------------------------------------------------------------


def _poison_free(state: Any, event: Any) -> Any:
    from projections.fold import apply

    return apply(state, event)


def test_account_replay_reapplies_a_parked_file_account(make_settings: MakeSettings) -> None:
    s = make_settings(fsync="off")
    sick = ACCOUNTS[0]
    fill(s, rounds=30)
    catch_up(s)
    old = snapshot_path(s, sick).read_bytes()
    fill(s, rounds=0, seed=3)  # another legacy import of every sample: a new version each
    catch_up(s)
    snapshot_path(s, sick).write_bytes(old)  # a restored backup: older than the log
    fill(s, rounds=0, seed=4)
    catch_up(s)
    assert [r["account"] for r in parked(s)] == [sick]
    done = cli(s, "replay", "file", "--account", sick)
    assert done.returncode == 0, done.stderr
    assert "unparked" in done.stdout
    assert parked(s) == [] and read_park(s, sick) is None
    assert_matches_fold(s)
    fill(s, rounds=5, seed=5)  # the daemon goes on with it
    catch_up(s)
    assert parked(s) == []
    assert_matches_fold(s)


def test_account_replay_reapplies_a_poisoned_account_once_the_fold_is_fixed(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections.file_projector as file_projector
    import projections.replay_fold as replay_module  # where Folded looks `apply` up
    from projections.fold import apply

    s = make_settings(fsync="off")
    sick = ACCOUNTS[1]

    def buggy(state: Any, event: Any) -> Any:
        if event.account == sick and event.version == 3:
            raise RuntimeError("a bug in the fold")
        return apply(state, event)

    fill(s, rounds=40)
    monkeypatch.setattr(file_projector, "apply", buggy)
    monkeypatch.setattr(replay_module, "apply", buggy)
    catch_up(s)
    assert [r["account"] for r in parked(s)] == [sick]
    [still] = replay_accounts(s, [sick], ("file",))
    assert still.error is not None and "a bug in the fold" in still.error
    assert read_park(s, sick) is not None  # left parked: its events still do not fold
    # A full replay parks it the same way, with every later event waiting.
    report = rebuild(s, ("file",))
    record = read_park(s, sick)
    assert list(report.parked) == [sick] and record is not None and record.version == 3
    monkeypatch.setattr(replay_module, "apply", apply)  # the fix is deployed
    monkeypatch.setattr(file_projector, "apply", apply)
    [fixed] = replay_accounts(s, [sick], ("file",))
    assert fixed.error is None and fixed.unparked["file"] == record.last_version - 2
    assert parked(s) == []
    assert_matches_fold(s)


def test_account_replay_reapplies_a_parked_redis_account(
    rs: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rs.key_prefix)
    sick = ACCOUNTS[2]
    fill(rs, rounds=30)
    project_redis(rs, redis_client)
    version = int(redis_client.hget(keys.meta(sick), "version") or 0)
    redis_client.hset(keys.meta(sick), "version", version - 2)  # rolled back
    with Writer(rs) as writer:
        writer.append(sick, "TradeOfferUpserted", {"offer": {"trade_offer_id": "42"}})
    project_redis(rs, redis_client)
    assert redis_client.hexists(keys.parked(), sick)
    done = cli(rs, "replay", "redis", "--account", sick, "--json")
    assert done.returncode == 0, done.stderr
    [result] = orjson.loads(done.stdout)["accounts"]
    assert result["done"] == {"redis": "written"} and result["unparked"] == {"redis": 0}
    assert not redis_client.hexists(keys.parked(), sick)
    assert not redis_client.exists(keys.parked_events(sick))
    from projections.verify import verify

    catch_up(rs)  # the file projection too: one behind with its projector stopped fails
    assert verify(rs).ok


def test_full_replay_clears_parked_records(rs: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rs.key_prefix)
    fill(rs, rounds=30)
    catch_up(rs)
    project_redis(rs, redis_client)
    sick = ACCOUNTS[3]
    redis_client.hset(keys.meta(sick), "version", 1)
    old = snapshot_path(rs, sick).read_bytes()
    fill(rs, rounds=0, seed=6)
    catch_up(rs)
    snapshot_path(rs, sick).write_bytes(old)  # rolled back
    fill(rs, rounds=0, seed=7)
    catch_up(rs)
    project_redis(rs, redis_client)
    assert parked(rs) and redis_client.hlen(keys.parked()) == 1
    stopped_long_ago(redis_client, rs)
    report = rebuild(rs, ("file", "redis"))
    assert report.cleared == 2 and report.parked == {}
    assert parked(rs) == [] and redis_client.hlen(keys.parked()) == 0
    assert not list(redis_client.scan_iter(match=f"{rs.key_prefix}:parked:*"))
    from projections.verify import verify

    assert verify(rs).ok


# --- live -------------------------------------------------------------------------------------


def test_live_file_replay_switches_a_symlink_atomically(make_settings: MakeSettings) -> None:
    s = make_settings(fsync="off")
    fill(s, rounds=50)
    catch_up(s)
    live = snapshot_files(s)
    done = cli(s, "replay", "file", "--live")
    assert done.returncode == 0, done.stderr
    assert s.snapshot_dir.is_symlink() and os.readlink(s.snapshot_dir) == "negotiations.replay-1"
    assert snapshot_files(s) == live
    again = cli(s, "replay", "file", "--live")  # from a symlink to the next copy
    assert again.returncode == 0, again.stderr
    assert os.readlink(s.snapshot_dir) == "negotiations.replay-2"
    assert not (s.data_dir / "negotiations.replay-1").exists()
    assert sorted(p.name for p in s.data_dir.iterdir() if "negotiations" in p.name) == [
        "negotiations",
        "negotiations.replay-2",
    ]
    before = sum(log_ends(s).values())
    fill(s, rounds=5, seed=7)  # the projector and the readers work through the symlink
    assert catch_up(s).applied == sum(log_ends(s).values()) - before
    assert_matches_fold(s)


@pytest.fixture
def file_daemon(make_settings: MakeSettings) -> Iterator[tuple[Settings, subprocess.Popen[str]]]:
    """A `tradelog project file` daemon of the test's own, stopped (SIGTERM) at the end."""
    s = make_settings(fsync="off")
    fill(s, rounds=40)
    env = {**os.environ, "TRADELOG_DATA_DIR": str(s.data_dir), "TRADELOG_REDIS_URL": "",
           "TRADELOG_PARTITIONS": str(s.partitions), "TRADELOG_FSYNC": "off"}  # fmt: skip
    proc = subprocess.Popen([TRADELOG, "project", "file"], env=env, text=True)
    try:
        yield s, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_projected(s: Settings, timeout: float = 30.0) -> None:
    """Until the file projector's checkpoint reaches the log end (woken by its bell)."""
    import time

    from eventlog.notify import PROGRESS, Bell

    bell = Bell(s.run_dir, PROGRESS)
    deadline = time.monotonic() + timeout
    try:
        while read_checkpoint(s).positions != log_ends(s):
            assert time.monotonic() < deadline, "the file projector did not catch up"
            bell.wait(0.5)
    finally:
        bell.close()


@pytest.mark.parametrize("paused_events", [0, 2000])
def test_live_file_replay_beside_a_running_projector_and_writers(
    file_daemon: tuple[Settings, subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
    paused_events: int,
) -> None:
    """0: what arrives during the rebuild is caught up beside the running projector
    first; 2000: all of it with the projector paused."""
    import projections.replay_live_file as replay_module
    from projections.replay import replay_file_live
    from projections.verify import verify

    monkeypatch.setattr(replay_module, "_PAUSED_EVENTS", paused_events)
    s, proc = file_daemon
    wait_projected(s)
    stop = threading.Event()

    def write() -> None:
        rng = random.Random(9)
        with Writer(s) as writer:
            i = 0
            while not stop.is_set() or i < 200:
                writer.append(rng.choice(ACCOUNTS), *_event(rng, 1000 + i))
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        report = replay_file_live(s)
    finally:
        stop.set()
        writer.join()
    assert any(f"pid {proc.pid}" in note for note in report.notes)  # it was paused
    assert proc.poll() is None  # and resumed
    assert os.readlink(s.snapshot_dir) == "negotiations.replay-1"
    wait_projected(s)
    result = verify(s)
    assert result.ok and result.agree == {"file": len(ACCOUNTS)}, result.as_dict()


@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
)
@hypothesis.given(log=logs(), batch=st.integers(1, 6))
def test_replay_equals_the_file_projector_for_any_log(
    log: list[tuple[str, str, dict[str, Any]]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(data_dir=tmp, redis_url="", partitions=2, fsync="off")
        with Writer(s) as writer:
            for account, kind, data in log:
                writer.append(account, kind, data)
        catch_up(s, batch=batch)
        live = snapshot_files(s)
        shutil.rmtree(s.snapshot_dir)
        rebuild(s, ("file",))
        assert snapshot_files(s) == live


def test_replay_removes_projections_of_nothing_and_keeps_foreign_files(
    make_settings: MakeSettings,
) -> None:
    s = make_settings(fsync="off")
    fill(s, rounds=10)
    catch_up(s)
    stray, legacy = "76561199999999999", "76561199999999998"
    snapshot_path(s, stray).write_bytes(snapshot_path(s, ACCOUNTS[0]).read_bytes())
    snapshot_path(s, legacy).write_bytes(b'{"account_steam_id": "76561199999999998"}')
    report = rebuild(s, ("file",))
    assert not snapshot_path(s, stray).exists() and snapshot_path(s, legacy).exists()
    assert any(stray in note for note in report.notes)
    done = cli(s, "replay", "file", "--live")  # the copy keeps the foreign file too
    assert done.returncode == 0, done.stderr
    assert snapshot_path(s, legacy).read_bytes() == b'{"account_steam_id": "76561199999999998"}'
    assert_matches_fold(s, skip=frozenset({legacy}))


def test_api_reads_through_the_switched_symlink(make_settings: MakeSettings) -> None:
    from starlette.testclient import TestClient

    from api.app import create_app
    from projections.fold import dumps, fold_all
    from tests.test_file_projection import log_events

    s = make_settings(fsync="off", api_keys="replay-test-key")
    fill(s, rounds=20)
    catch_up(s)
    assert cli(s, "replay", "file", "--live").returncode == 0
    assert s.snapshot_dir.is_symlink()
    folds = fold_all(log_events(s))
    with TestClient(create_app(s)) as client:
        headers = {"X-API-Key": "replay-test-key"}
        for account, fold in folds.items():
            body = client.get(f"/negotiations/{account}", headers=headers).json()
            assert body["source"] == "file" and body["version"] == fold.doc["version"]
            assert dumps(body["data"]) == dumps(fold.doc)
        summary = client.get("/negotiations", headers=headers).json()
        assert summary["accounts"] == len(folds)


def test_forced_replay_replaces_accounts_a_projector_wrote_meanwhile(
    rs: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections.replay_offline as replay_module
    from projections.verify import verify

    fill(rs, rounds=30)
    catch_up(rs)
    project_redis(rs, redis_client)
    clear = replay_module.clear_redis

    def clear_then_race(client: redis.Redis, keys: Keys) -> int:
        count = clear(client, keys)
        client.hset(keys.meta(ACCOUNTS[0]), mapping={"version": 999, "junk": "x"})
        return count

    monkeypatch.setattr(replay_module, "clear_redis", clear_then_race)
    report = rebuild(rs, ("redis",), force=True)
    assert report.events == sum(log_ends(rs).values())
    assert not redis_client.hexists(Keys(rs.key_prefix).meta(ACCOUNTS[0]), "junk")
    assert verify(rs).ok


def test_a_forced_replay_rebuilds_what_the_running_projector_parked(
    rs: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`replay redis --force` beside a running projector: the projector finds the
    accounts the replay emptied and parks those it has new events of (a version gap
    above 0); the replay rebuilds them at its end instead of leaving them parked."""
    import projections.replay_offline as offline

    keys = Keys(rs.key_prefix)
    sick = ACCOUNTS[0]
    fill(rs, rounds=30)
    project_redis(rs, redis_client)
    real_clear = offline.clear_redis
    appended: list[int] = []

    def clear_then_race(client: redis.Redis, keys_: Keys) -> None:
        real_clear(client, keys_)
        with Writer(rs) as writer:  # a write meanwhile, and the projector running beside
            offer = {"offer": {"trade_offer_id": "77"}}
            appended.append(writer.append(sick, "TradeOfferUpserted", offer).version)
        project_redis(rs, redis_client)
        assert appended[0] > 1 and redis_client.hexists(keys.parked(), sick)

    monkeypatch.setattr(offline, "projector_activity", lambda *args: "a test says it runs")
    monkeypatch.setattr(offline, "clear_redis", clear_then_race)
    report = offline.rebuild(rs, ("redis",), force=True, workers=1)
    assert report.parked == {}
    assert not redis_client.hexists(keys.parked(), sick)
    assert any("parked 1 accounts" in note for note in report.notes), report.notes
    assert int(redis_client.hget(keys.meta(sick), "version") or 0) == appended[0]
