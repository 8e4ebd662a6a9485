"""The API when parts are missing: no projector running (a write still answers 2xx
after the bounded wait, `projected: false`; a read of its account, after the same
wait, a 503 rather than a document older than the log, which a bot would save back
whole; a burst of the projector makes it readable), and Redis unreachable (phase 1
writes and reads go on with `redis_written: false`; phase 2 reads are 503s that
append nothing; /ready says so)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

import projections.file_projector as file_projector
from eventlog import Writer
from eventlog.records import StoredEvent, partition_of
from eventlog.segments import partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from projections.daemon import run
from projections.file_projector import FileProjector
from projections.fold import Fold, apply
from projections.snapshots import snapshot_path
from tests.procs.api_harness import (
    ACCOUNT,
    HEADERS,
    KEY,
    SAMPLES,
    WAIT_MS,
    ProjectorThread,
    account_id,
    assert_error,
    free_port,
    log_length,
    serving,
)
from tools.cmd_import import import_dir

BASE = f"/negotiations/{ACCOUNT}"
UPSERT = f"{BASE}/atomic-upsert-trade-offer"


def offer(oid: str) -> dict[str, Any]:
    return {"trade_offer_data": {"trade_offer_id": oid}}


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL nobody listens on: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


def test_write_without_a_projector_times_out_to_projected_false(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(api_keys=KEY, projection_wait_ms=300)
    with serving(settings, projectors=()) as client:
        started = time.monotonic()
        resp = client.post(UPSERT, json=offer("1"), headers=HEADERS)
        took = time.monotonic() - started
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["projected"] is False
        assert body["version"] == 1 and body["event_id"]
        assert took >= 0.3  # it waited for the projection, bounded
        assert log_length(settings) == 1
        stale = client.get(BASE, headers=HEADERS)
        err = assert_error(stale, 503, "projection_behind")
        assert err["details"] == {"version": 0, "log_version": 1}
        assert "projector" in err["error"]
        other = client.get("/negotiations/76561199027642399", headers=HEADERS).json()
        assert other["created_new"] is True  # an account without events: no wait
        assert log_length(settings) == 1

        # The projector in burst mode applies what the log holds, then returns.
        run(FileProjector(settings), threading.Event(), until_caught_up=True)
        got = client.get(BASE, headers=HEADERS).json()
        assert got["version"] == 1
        assert [o["trade_offer_id"] for o in got["data"]["trade_offers"]] == ["1"]
        lag = client.get("/ready", headers=HEADERS).json()["projectors"]["file"]["lag"]
        assert set(lag.values()) == {0}


def test_a_read_of_an_account_appended_before_the_worker_started_is_never_stale(
    make_settings: Callable[..., Settings],
) -> None:
    """Events appended before this worker started (an import, the previous phase's
    writes), with the projector stopped: its first read of the partition asks the log,
    and answers 503 rather than the empty new document (or an older one), which a bot
    would save back whole over what was imported."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=200)
    with Writer(settings) as writer:  # another process, before the API started
        writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": "5"}})
    with serving(settings, projectors=()) as client:
        err = assert_error(client.get(BASE, headers=HEADERS), 503, "projection_behind")
        assert err["details"] == {"version": 0, "log_version": 1}
        new = client.get("/negotiations/76561199027642399", headers=HEADERS).json()
        assert new["created_new"] is True  # an account without events: no wait
        run(FileProjector(settings), threading.Event(), until_caught_up=True)
        got = client.get(BASE, headers=HEADERS).json()
        assert got["version"] == 1 and got["created_new"] is False
    assert log_length(settings) == 1


def test_a_read_after_a_failed_batch_in_its_partition_asks_the_log_again(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed batch leaves the worker's command side at its last save (none here)
    until it reads the partition again: a read meanwhile asks the log, and does not
    take the saved version (or none) for the log's."""
    from eventlog import filelog
    from eventlog._exceptions import LogUnavailable

    settings = make_settings(api_keys=KEY, projection_wait_ms=200)
    with Writer(settings) as writer:  # another process, before the API started
        for oid in ("1", "2", "3"):
            writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": oid}})
    p = partition_of(ACCOUNT, settings.partitions)
    (partition_dir(settings.log_dir, p) / "command-state.json").unlink()
    neighbour = next(
        a for a in map(account_id, range(1, 200))
        if a != ACCOUNT and partition_of(a, settings.partitions) == p
    )  # fmt: skip
    with serving(settings, projectors=()) as client:
        assert_error(client.get(BASE, headers=HEADERS), 503, "projection_behind")
        real_write = filelog.PartitionFile.write

        def full(self: filelog.PartitionFile, block: bytes, count: int) -> None:
            monkeypatch.setattr(filelog.PartitionFile, "write", real_write)  # once
            raise LogUnavailable("disk full")

        monkeypatch.setattr(filelog.PartitionFile, "write", full)
        failed = client.post(f"/negotiations/{neighbour}/atomic-upsert-trade-offer",
                             json=offer("9"), headers=HEADERS)  # fmt: skip
        assert failed.status_code == 503
        err = assert_error(client.get(BASE, headers=HEADERS), 503, "projection_behind")
        assert err["details"] == {"version": 0, "log_version": 3}
    assert log_length(settings) == 3


def test_a_read_waits_for_the_projector_to_reach_what_the_log_holds(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event appended without waiting (the library's append); the projector starts
    only once the read waits for it: the read answers the new document, not the older."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=30_000)
    with serving(settings, projectors=()) as client:
        state = client.app.state.tradelog  # type: ignore[attr-defined]
        offers = {"offer": {"trade_offer_id": "5"}}
        assert state.writer.append(ACCOUNT, "TradeOfferUpserted", offers).version == 1
        projector = ProjectorThread(FileProjector(settings), settings)
        real_wait = state.waiter.wait

        async def wait(*args: Any) -> bool:
            if projector.thread.ident is None:
                projector.start()
            return await real_wait(*args)

        monkeypatch.setattr(state.waiter, "wait", wait)
        try:
            got = client.get(BASE, headers=HEADERS)
        finally:
            if projector.thread.ident is not None:
                projector.stop()
        assert projector.thread.ident is not None  # the read did wait
        assert got.status_code == 200, got.text
        assert got.json()["version"] == 1 and got.headers["etag"] == '"1"'
        assert [o["trade_offer_id"] for o in got.json()["data"]["trade_offers"]] == ["5"]


def test_a_read_of_a_parked_account_says_so_at_once(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The projection stays at the event that did not apply until an operator re-applies
    the account: no wait can help, so the read answers 503 `account_parked` at once,
    saying why and how to re-apply it, rather than waiting the bound out."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=5_000)

    def buggy(state: Fold | None, event: StoredEvent) -> Fold:
        if event.data["offer"]["trade_offer_id"] == "2":
            raise RuntimeError("a bug in the fold")
        return apply(state, event)

    monkeypatch.setattr(file_projector, "apply", buggy)
    with serving(settings, projectors=()) as client:
        state = client.app.state.tradelog  # type: ignore[attr-defined]
        for oid in ("1", "2"):
            state.writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": oid}})
        run(FileProjector(settings), threading.Event(), until_caught_up=True)
        err = assert_error(client.get(BASE, headers=HEADERS), 503, "account_parked")
        assert err["details"]["version"] == 1 and err["details"]["log_version"] == 2
        assert "a bug in the fold" in err["details"]["parked"]
        assert f"tradelog replay file --account {ACCOUNT}" in err["error"]
        other = client.get("/negotiations/76561199027642399", headers=HEADERS)
        assert other.status_code == 200 and other.json()["created_new"] is True
    with serving(settings, projectors=()) as client:  # a worker that never wrote it
        err = assert_error(client.get(BASE, headers=HEADERS), 503, "account_parked")
        assert err["details"]["version"] == 1 and err["details"]["log_version"] == 2


@pytest.mark.parametrize("phase", [1, 2])
def test_a_write_to_a_parked_account_is_not_projected(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    phase: int,
) -> None:
    """Its event waits in the park: the projector moves past it (it goes on with the
    other accounts), but the read projection does not hold it (Guarantee 7). The write
    that parks it is asked about afresh, not from what the worker heard a moment ago."""
    import projections.redis_plan as redis_plan

    if phase == 1:
        settings = make_settings(api_keys=KEY, projection_wait_ms=5_000)
        module, projectors = file_projector, ("file",)
    else:
        redis_url = request.getfixturevalue("redis_url")
        settings = make_settings(api_keys=KEY, projection_wait_ms=5_000, redis_url=redis_url,
                                 phase=2)  # fmt: skip
        module, projectors = redis_plan, ("redis",)

    def buggy(state: Fold | None, event: StoredEvent) -> Fold:
        if event.data["offer"]["trade_offer_id"] == "2":
            raise RuntimeError("a bug in the fold")
        return apply(state, event)

    monkeypatch.setattr(module, "apply", buggy)
    with serving(settings, projectors=projectors) as client:
        assert client.post(UPSERT, json=offer("1"), headers=HEADERS).json()["projected"]
        parking = client.post(UPSERT, json=offer("2"), headers=HEADERS).json()
        assert parking["version"] == 2 and parking["projected"] is False
        waiting = client.post(UPSERT, json=offer("3"), headers=HEADERS).json()
        assert waiting["version"] == 3 and waiting["projected"] is False
        other = client.post("/negotiations/76561199027642399/atomic-upsert-trade-offer",
                            json=offer("4"), headers=HEADERS).json()  # fmt: skip
        assert other["projected"] is True
        assert_error(client.get(BASE, headers=HEADERS), 503, "account_parked")


def test_a_damaged_snapshot_is_a_503_not_a_new_account(
    make_settings: Callable[..., Settings],
) -> None:
    """A snapshot cut short or overwritten is no legacy file nobody imported: read as
    unknown, it would answer the empty default document, which a bot saves back whole."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=0)
    with serving(settings, projectors=()) as client:
        state = client.app.state.tradelog  # type: ignore[attr-defined]
        state.writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
        run(FileProjector(settings), threading.Event(), until_caught_up=True)
        assert client.get(BASE, headers=HEADERS).json()["version"] == 1
        path = snapshot_path(settings, ACCOUNT)
        path.write_bytes(path.read_bytes()[:40])
        err = assert_error(client.get(BASE, headers=HEADERS), 503, "snapshot_unreadable")
        assert str(path) in err["error"]
        # The totals and the account's health say so, and still answer.
        summary = client.get("/negotiations", headers=HEADERS)
        assert summary.status_code == 200 and summary.json()["unreadable"] == 1, summary.text
        health = client.get(f"{BASE}/health", headers=HEADERS)
        assert health.status_code == 200, health.text
        assert str(path) in health.json()["file_error"] and not health.json()["in_sync"]


def test_a_damaged_log_line_is_a_503_naming_it(make_settings: Callable[..., Settings]) -> None:
    """Guarantee 2's damaged middle line, met by a write: 503 naming the file and line
    (not a 500), nothing appended, /ready naming it; other partitions go on."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=0)
    with Writer(settings) as writer:
        for oid in ("1", "2", "3"):
            writer.append(ACCOUNT, "TradeOfferUpserted", {"offer": {"trade_offer_id": oid}})
    pdir = partition_dir(settings.log_dir, partition_of(ACCOUNT, settings.partitions))
    segment = segment_path(pdir, segment_bases(pdir)[-1])
    lines = segment.read_bytes().split(b"\n")
    lines[1] = b"x" * len(lines[1])
    segment.write_bytes(b"\n".join(lines))
    p = partition_of(ACCOUNT, settings.partitions)
    other = next(a for a in map(account_id, range(99)) if partition_of(a, settings.partitions) != p)
    with serving(settings, projectors=()) as client:
        written = client.post(UPSERT, json=offer("4"), headers=HEADERS)
        err = assert_error(written, 503, "log_damaged")
        assert err["details"] == {"file": str(segment), "line": 2}
        assert f"{segment}:2" in err["error"]
        ready = client.get("/ready", headers=HEADERS).json()  # said, not gating readiness
        assert list(ready["log_damaged"].values()) == [err["error"]]
        assert "damaged" not in (ready.get("error") or "")  # (no projector runs here)
        fine = client.post(f"/negotiations/{other}/atomic-upsert-trade-offer", json=offer("1"),
                           headers=HEADERS)  # fmt: skip
        assert fine.status_code == 200, fine.text
    assert segment.read_bytes() == b"\n".join(lines)  # nothing appended there


def test_a_read_with_no_wait_asked_answers_the_projection_as_it_is(
    make_settings: Callable[..., Settings],
) -> None:
    """TRADELOG_PROJECTION_WAIT_MS=0 asks for no read-your-writes, reads included."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=0)
    with serving(settings, projectors=()) as client:
        assert client.post(UPSERT, json=offer("1"), headers=HEADERS).json()["projected"] is False
        got = client.get(BASE, headers=HEADERS)
        assert got.status_code == 200 and got.json()["version"] == 0


def test_ready_says_the_read_projector_is_down_once_events_wait_for_it(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(api_keys=KEY, projection_wait_ms=0)
    with serving(settings, projectors=()) as client:
        ready = client.get("/ready", headers=HEADERS)
        assert ready.status_code == 200, ready.text  # nothing to apply: no read is behind
        assert ready.json()["projectors"]["file"]["running"] is False
        assert client.post(UPSERT, json=offer("1"), headers=HEADERS).status_code == 200
        ready = client.get("/ready", headers=HEADERS)
        assert_error(ready, 503, "not_ready")
        assert (
            "the file projector, which reads come from, is not running, and 1 event waits"
            in (ready.json()["error"])
        )
        run(FileProjector(settings), threading.Event(), until_caught_up=True)
        ready = client.get("/ready", headers=HEADERS)
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["projectors"]["file"]["lag"].values()) == {0}


def test_zero_wait_answers_at_once(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys=KEY, projection_wait_ms=0)
    with serving(settings, projectors=()) as client:
        for i in range(3):
            body = client.post(UPSERT, json=offer(str(i)), headers=HEADERS).json()
            assert body["projected"] is False and body["version"] == i + 1
        run(FileProjector(settings), threading.Event(), until_caught_up=True)
        assert client.get(BASE, headers=HEADERS).json()["version"] == 3


def test_phase_1_with_redis_unreachable(
    make_settings: Callable[..., Settings], dead_redis_url: str
) -> None:
    settings = make_settings(
        api_keys=KEY, redis_url=dead_redis_url, phase=1, projection_wait_ms=WAIT_MS
    )
    with serving(settings) as client:
        resp = client.post(UPSERT, json=offer("1"), headers=HEADERS)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["redis_written"] is False
        assert body["redis_operation"] == "deferred"
        live = client.get("/health")  # "health says so", without waiting on Redis
        assert live.status_code == 200 and live.json()["redis"] == "failing"
        assert body["projected"] is True  # phase 1 reads the files
        got = client.get(BASE, headers=HEADERS).json()
        assert got["source"] == "file" and got["version"] == 1

        ready = client.get("/ready", headers=HEADERS)
        assert ready.status_code == 200  # phase 1 does not need Redis to serve
        state = ready.json()
        assert state["redis"]["enabled"] is True and state["redis"]["reachable"] is False
        assert state["redis_written_failures"] >= 1
        metrics = client.get("/metrics", headers=HEADERS).text.splitlines()
        name = "tradelog_redis_written_failures_total"
        [line] = [x for x in metrics if x.startswith(name)]
        assert float(line.split()[-1]) >= 1
        health = client.get(f"{BASE}/health", headers=HEADERS).json()
        assert health["versions"]["log"] == health["versions"]["file"] == 1
        summary = client.get("/negotiations", headers=HEADERS)
        assert summary.status_code == 200 and summary.json()["trade_offers"] == 1


def test_phase_2_with_redis_unreachable(
    make_settings: Callable[..., Settings], dead_redis_url: str
) -> None:
    settings = make_settings(
        api_keys=KEY, redis_url=dead_redis_url, phase=2, projection_wait_ms=100
    )
    with serving(settings, projectors=()) as client:
        # Writes go on: the file log is primary in phase 2.
        resp = client.post(UPSERT, json=offer("1"), headers=HEADERS)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["redis_written"] is False and body["projected"] is False
        assert log_length(settings) == 1

        # Reads from Redis cannot be answered: 503, the error shape, nothing appended.
        for path in (BASE, "/negotiations", "/negotiations/"):
            assert_error(client.get(path, headers=HEADERS), 503, "unavailable")
        ready = client.get("/ready", headers=HEADERS)
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert ready.json()["redis"]["reachable"] is False
        assert_error(ready, 503, "not_ready")  # the error shape, beside the report
        # The log itself is still readable.
        events = client.get(f"{BASE}/events", headers=HEADERS).json()["events"]
        assert [e["version"] for e in events] == [1]
        assert log_length(settings) == 1


def test_a_projector_runs_while_it_beats_and_its_pid_lives_where_pids_can_tell() -> None:
    import subprocess
    import sys

    from projections.checkpoint import Checkpoint, now_ms, pid_namespace, running

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = pid_namespace()
    assert here  # Linux: /proc/self/ns/pid
    fresh = now_ms()
    assert running(Checkpoint({}, fresh, os.getpid(), here))
    assert not running(Checkpoint({}, fresh, gone.pid, here))  # killed: its beat still fresh
    # From another pid namespace (a container) its pid means nothing here: the beat counts.
    assert running(Checkpoint({}, fresh, gone.pid, here + 1))
    assert not running(Checkpoint({}, fresh - 60_000, os.getpid(), here))  # stalled
    assert not running(Checkpoint())  # never ran


def test_a_legacy_file_nobody_imported_is_a_503_until_it_is(
    make_settings: Callable[..., Settings],
) -> None:
    """The legacy data dir made tradelog's before `import-legacy`: a GET answering the
    account as new (a bot saves that back whole) or a write (its projection would
    replace the file) would lose the legacy document. Both are 503, nothing is
    appended, the file stays; once imported, the account reads as the file was."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=WAIT_MS)
    sample = SAMPLES[0]
    account = sample.stem
    path = snapshot_path(settings, account)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sample.read_bytes())
    base = f"/negotiations/{account}"
    with serving(settings) as client:
        err = assert_error(client.get(base, headers=HEADERS), 503, "legacy_not_imported")
        assert "import-legacy" in err["error"] and err["details"] == {"file": str(path)}
        written = client.post(f"{base}/atomic-upsert-trade-offer", json=offer("1"),
                              headers=HEADERS)  # fmt: skip
        assert_error(written, 503, "legacy_not_imported")
        assert log_length(settings) == 0 and path.read_bytes() == sample.read_bytes()
        health = client.get(f"{base}/health", headers=HEADERS).json()  # says so, and answers
        assert "import-legacy" in health["file_error"] and health["in_sync"] is False
        # A new account beside it is no legacy file: answered as new.
        fresh = client.get(f"/negotiations/{account_id(50)}", headers=HEADERS)
        assert fresh.status_code == 200 and fresh.json()["created_new"] is True
        report = import_dir(client.app.state.tradelog.writer, path.parent)  # type: ignore[attr-defined]
        assert (report.ok, report.failed) == (1, 0), report.errors
        doc = client.get(base, headers=HEADERS).json()
        assert doc["created_new"] is False and doc["version"] == 1
        assert doc["data"]["trade_offers"] == orjson.loads(sample.read_bytes())["trade_offers"]
        written = client.post(f"{base}/atomic-upsert-trade-offer", json=offer("1"),
                              headers=HEADERS)  # fmt: skip
        assert written.status_code == 200 and written.json()["version"] == 2, written.text


def test_a_parked_legacy_account_answers_account_parked(
    make_settings: Callable[..., Settings],
) -> None:
    """An event that got past the API's check (another writer) parks the account in the
    file projection; its GET says so (not `legacy_not_imported`, which a retry cannot
    mend), and later writes wait in the park, the file untouched."""
    settings = make_settings(api_keys=KEY, projection_wait_ms=0)
    sample = SAMPLES[0]
    path = snapshot_path(settings, sample.stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sample.read_bytes())
    with Writer(settings) as writer:
        writer.append(sample.stem, "TradeOfferUpserted", {"offer": {"trade_offer_id": "9"}})
    run(FileProjector(settings), threading.Event(), until_caught_up=True)
    base = f"/negotiations/{sample.stem}"
    with serving(settings, projectors=()) as client:
        err = assert_error(client.get(base, headers=HEADERS), 503, "account_parked")
        assert "import-legacy" in err["details"]["parked"]
        written = client.post(f"{base}/atomic-upsert-trade-offer", json=offer("2"),
                              headers=HEADERS)  # fmt: skip
        assert written.status_code == 200, written.text
    run(FileProjector(settings), threading.Event(), until_caught_up=True)
    assert path.read_bytes() == sample.read_bytes()


def test_ready_says_a_partition_no_redis_projector_process_holds_is_stalled(
    make_settings: Callable[..., Settings], redis_url: str, redis_client: Any
) -> None:
    """One process of the Redis projector's group hangs: the others keep the heartbeat
    fresh, but its leases lapse while events wait in its partitions."""
    from eventlog.keys import Keys

    settings = make_settings(api_keys=KEY, redis_url=redis_url, phase=2, projection_wait_ms=0)
    keys = Keys(settings.key_prefix)
    p = partition_of(ACCOUNT, settings.partitions)
    with serving(settings, projectors=()) as client:
        assert client.post(UPSERT, json=offer("1"), headers=HEADERS).status_code == 200
        now_ms = int(time.time() * 1000)  # the other processes' beat
        redis_client.hset(
            keys.progress("redis"), mapping={"heartbeat": now_ms, "heartbeat_by": "h-1"}
        )
        for q in range(settings.partitions):
            if q != p:
                redis_client.set(keys.lease(q), "h-1", px=10_000)
        ready = client.get("/ready", headers=HEADERS)
        err = assert_error(ready, 503, "not_ready")
        assert (
            f"no process of the redis projector, which reads come from, holds partitions {p},"
            in err["error"]
        )
        assert ready.json()["projectors"]["redis"]["unheld"] == [p]
        redis_client.set(keys.lease(p), "h-0", px=10_000)  # taken again
        assert client.get("/ready", headers=HEADERS).status_code == 200
