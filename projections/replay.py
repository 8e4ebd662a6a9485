"""Rebuilding projections from the file log, the truth: what `tradelog replay` runs.

A full rebuild is one pass over the log: every partition is folded in memory with
`projections.fold.apply` from empty (nothing skipped), then each account is written
once: its snapshot file (a thread pool: fsync releases the GIL) and/or its Redis
keys (whole-account `save_document` calls, pipelined in big batches). Partitions
are independent (an account lives in one), so on a multi-core machine they are
split over worker processes, each folding and writing its own accounts. Last, the
projector's position is set to the log end the pass stopped at (measured before
it started), so the daemon goes on from there without applying anything again.

An account whose events do not fold (a poison event, a gap in the log) is parked
as the daemons park it: its last good state is written and the failing event and
every later one wait in its dead-letter record. Everything parked before is
cleared: it is rebuilt from the log.

`replay_accounts` rebuilds chosen accounts only (`--account`, and verify's
repair); `replay_file_live` builds a fresh copy of the file projection beside the
live one and switches reads to it atomically.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
import redis

from eventlog import _exceptions as errors
from eventlog._exceptions import (
    LogUnavailable,
    ProjectorBusy,
    RedisUnavailable,
    SettingsError,
    SnapshotUnavailable,
    TradelogError,
)
from eventlog.events import check_steam_id
from eventlog.keys import Keys
from eventlog.notify import PROGRESS, Bell
from eventlog.records import StoredEvent, partition_of
from eventlog.redisconn import connect
from eventlog.segments import Cursor, log_end, log_ends, partition_dir
from eventlog.settings import Settings

from .checkpoint import (
    Checkpoint,
    ParkRecord,
    check_partitions,
    checkpoint_dir,
    lock_projection,
    now_ms,
    read_checkpoint,
    read_park,
    read_parks,
    remove_park,
    write_checkpoint,
    write_park,
)
from .fold import Fold, apply
from .redis_applier import RedisApplier
from .redis_parking import Parking
from .redis_scripts import SAVE_DOCUMENT, Call, Scripts, Status, save_call, status_of
from .snapshots import (
    decode,
    encode,
    fsync_dir,
    make_dirs,
    snapshot_path,
    write_atomic,
    write_snapshots,
)

__all__ = [
    "TARGETS",
    "AccountResult",
    "Folded",
    "Meter",
    "Poisoned",
    "ReplayReport",
    "Tick",
    "fold_log",
    "log_ends",
    "read_log",
    "rebuild",
    "redis_client",
    "replay_accounts",
    "replay_file_live",
    "run_jobs",
    "split_partitions",
]

TARGETS = ("file", "redis")
_READ = 20_000  # events per cursor read: one read chunk, a few MiB
_SAVE_BATCH = 200  # accounts per pipelined round trip of save_document calls
_WRITERS = 8  # snapshot writes in flight per process
_REDIS_TIMEOUT_MS = 120_000  # a batch of whole accounts can take seconds to apply

Tick = Callable[[int], None]  # called with how many more events were folded


@dataclass(slots=True)
class Poisoned:
    """An account whose events stopped folding: why, its last good version, what waits."""

    error: str
    held: int
    events: list[StoredEvent]


@dataclass(slots=True)
class Folded:
    """Accounts folded from the log: their states, last positions, poisoned accounts."""

    folds: dict[str, Fold] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)  # account -> its last event's offset
    poisoned: dict[str, Poisoned] = field(default_factory=dict)
    events: int = 0
    wanted: frozenset[str] | None = None  # fold only these accounts (None: all)

    def add(self, event: StoredEvent) -> None:
        account = event.account
        if self.wanted is not None and account not in self.wanted:
            return
        bad = self.poisoned.get(account)
        if bad is not None:
            bad.events.append(event)  # order within the account is never broken
            return
        state = self.folds.get(account)
        try:
            self.folds[account] = apply(state, event)
        except Exception as e:  # a poison event (a bug) or a gap in the log: park it
            held = 0 if state is None else int(state.doc["version"])
            self.poisoned[account] = Poisoned(f"{type(e).__name__}: {e}", held, [event])
            return
        self.last[account] = event.offset

    def add_all(self, events: list[StoredEvent]) -> None:
        """`add` for each event; the common case (every account folds) inlined for speed."""
        if self.wanted is not None or self.poisoned:
            for event in events:
                self.add(event)
            return
        folds, last = self.folds, self.last
        for i, event in enumerate(events):
            account = event.account
            try:
                folds[account] = apply(folds.get(account), event)
            except Exception:
                for rest in events[i:]:
                    self.add(rest)  # the slow path from the first poison event on
                return
            last[account] = event.offset

    def position(self, account: str, partitions: int) -> str:
        return f"{partition_of(account, partitions)}:{self.last[account]}"


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    # A fold allocates millions of acyclic objects that stay alive to the end; the
    # cycle collector would rescan them again and again. Reference counting frees them.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_log(
    settings: Settings, ends: dict[int, int], start: dict[int, int] | None = None
) -> Iterator[tuple[int, list[StoredEvent]]]:
    """(partition, events) in log order, partition by partition, for offsets [start, end)."""
    for p in sorted(ends):
        end, first = ends[p], (start or {}).get(p, 0)
        if first >= end:
            continue
        cursor = Cursor(partition_dir(settings.log_dir, p), p, first)
        try:
            while cursor.next_offset < end:
                events, _ = cursor.read(limit=_READ)
                if not events:
                    break
                if cursor.next_offset > end:  # appended after the end was measured
                    del events[len(events) - (cursor.next_offset - end) :]
                yield p, events
            if cursor.next_offset < end:
                raise LogUnavailable(
                    f"partition {p} of {settings.log_dir} ends at offset "
                    f"{cursor.next_offset}, before {end}: was the log cut?"
                )
        finally:
            cursor.close()


def fold_log(
    settings: Settings,
    ends: dict[int, int],
    into: Folded,
    *,
    tick: Tick | None = None,
    observe: Callable[[int, list[StoredEvent]], None] | None = None,
    start: dict[int, int] | None = None,
) -> Folded:
    """Fold partitions' events [start, end) into `into`, partition by partition."""
    with _quiet_gc():
        for p, events in read_log(settings, ends, start):
            if observe is not None:
                observe(p, events)
            into.add_all(events)
            into.events += len(events)
            if tick is not None:
                tick(len(events))
    return into


# --- writing the projections ------------------------------------------------------------------


def write_files(
    directory: Path, folds: Iterable[tuple[str, Fold]], *, sync: bool, writers: int = _WRITERS
) -> int:
    """Write each account's snapshot (the projector's exact bytes) into `directory`."""
    make_dirs(directory, sync=sync)

    def one(item: tuple[str, Fold]) -> int:
        data = encode(item[1])
        write_atomic(directory / f"{item[0]}.json", data, sync=sync)
        return 1

    with ThreadPoolExecutor(writers, "tradelog-replay-write") as pool:
        count = sum(pool.map(one, folds))
    if sync and count:
        fsync_dir(directory)  # every new entry durable with one sync of the directory
    return count


def park_files(settings: Settings, poisoned: dict[str, Poisoned], *, sync: bool) -> None:
    """The file projection's dead-letter records for accounts the fold could not apply."""
    records = [
        ParkRecord(account, bad.events[0].version, bad.held, bad.error, now_ms(), bad.events)
        for account, bad in sorted(poisoned.items())
    ]
    write_park(settings, records, sync=sync)


def redis_client(settings: Settings) -> redis.Redis:
    """A client with time-outs long enough for whole-account batches; SettingsError if off."""
    client = connect(settings, timeout_ms=_REDIS_TIMEOUT_MS)
    if client is None:
        raise SettingsError("TRADELOG_REDIS_URL: the Redis projection needs Redis; it is empty")
    return client


def save_redis(client: redis.Redis, keys: Keys, folded: Folded, partitions: int) -> list[str]:
    """Save every folded account whole into an emptied Redis projection, and park the poisoned.

    The accounts' keys were deleted first, so each save finds version 0 and applies;
    the accounts a running projector wrote meanwhile (a replay with --force) are
    returned, to be replaced whole in a transaction instead.
    """
    scripts = Scripts(client)
    accounts = sorted(folded.folds)
    raced: list[str] = []
    try:
        for i in range(0, len(accounts), _SAVE_BATCH):
            chunk = accounts[i : i + _SAVE_BATCH]
            calls = [Call("", [], ["SADD", keys.accounts(), *chunk])]
            calls += [
                save_call(keys, a, None, folded.folds[a], 0, folded.position(a, partitions))
                for a in chunk
            ]
            replies = scripts.run(calls)[1:]
            raced += [a for a, r in zip(chunk, replies, strict=True)
                      if status_of(r)[0] is not Status.APPLIED]  # fmt: skip
        parking = Parking(client, keys, scripts)
        for account, bad in sorted(folded.poisoned.items()):
            scripts.run([Call("", [], ["SADD", keys.accounts(), account])])
            scripts.run(parking.park(account, bad.events, bad.error))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot write the Redis projection: {e}") from e
    return raced


# --- running jobs over partitions, in worker processes ----------------------------------------

_shared: Any = None  # the worker's events counter (a multiprocessing Value)


def _init_worker(counter: Any) -> None:
    global _shared
    _shared = counter
    gc.disable()  # a worker only folds and writes: its objects are acyclic (see _quiet_gc)


def _tick_shared(n: int) -> None:
    with _shared.get_lock():
        _shared.value += n


def _in_worker(fn: Callable[[Any, Tick | None], Any], job: Any) -> Any:
    try:
        return fn(job, _tick_shared)
    except TradelogError as e:
        # Not every error type pickles back (custom __init__ arguments): send its name.
        return _Failed(type(e).__name__, str(e))


@dataclass(frozen=True, slots=True)
class _Failed:
    kind: str
    message: str

    def raise_it(self) -> None:
        kind = getattr(errors, self.kind, None)
        simple = (LogUnavailable, RedisUnavailable, errors.SnapshotUnavailable, SettingsError)
        if isinstance(kind, type) and issubclass(kind, simple):
            raise kind(self.message)
        raise TradelogError(self.message)


def split_partitions(ends: dict[int, int], workers: int | None) -> list[dict[int, int]]:
    """Partitions spread over at most `workers` groups of about equal event counts."""
    # Twice the cores: while one worker waits on fsync or Redis, another folds. A small
    # log is folded here: starting worker processes would cost more than folding it.
    count = workers or (min(2 * (os.cpu_count() or 1), 8) if sum(ends.values()) >= 50_000 else 1)
    groups: list[dict[int, int]] = [{} for _ in range(max(1, min(count, len(ends))))]
    loads = [0] * len(groups)
    for p, end in sorted(ends.items(), key=lambda item: -item[1]):
        i = loads.index(min(loads))
        groups[i][p] = end
        loads[i] += end
    return [g for g in groups if g] or [{}]


def run_jobs(fn: Callable[[Any, Tick | None], Any], jobs: Sequence[Any], tick: Tick | None) -> Any:
    """fn(job, tick) for each job: in this process for one job, else one process each.

    Workers are spawned (not forked: the caller may run threads, e.g. a progress bar)
    and report progress through a shared counter, polled here for the caller's tick.
    """
    if len(jobs) == 1:
        results = [fn(jobs[0], tick)]
    else:
        try:
            results = _spawn(fn, jobs, tick)
        except BrokenProcessPool as e:
            raise TradelogError(f"a replay worker process died: {e}") from e
    for result in results:
        if isinstance(result, _Failed):
            result.raise_it()
    return results


def _spawn(fn: Callable[[Any, Tick | None], Any], jobs: Sequence[Any], tick: Tick | None) -> Any:
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    with ProcessPoolExecutor(
        len(jobs), mp_context=ctx, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(_in_worker, fn, job) for job in jobs]
        seen = 0
        while True:
            _, pending = wait(futures, timeout=0.2)  # the bar's refresh, not a sync
            now = counter.value
            if tick is not None and now > seen:
                tick(now - seen)
            seen = now
            if not pending:
                break
        return [f.result() for f in futures]


def timed(start: float) -> float:
    return time.perf_counter() - start


# --- the offline rebuild ----------------------------------------------------------------------


class Meter(Protocol):
    """Where long work reports its progress (the CLI's bar)."""

    def start(self, total: int, what: str) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(slots=True)
class ReplayReport:
    mode: str
    targets: tuple[str, ...]
    events: int = 0
    accounts: int = 0
    seconds: float = 0.0
    fold_seconds: float = 0.0
    write_seconds: dict[str, float] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)  # account -> why it does not fold
    cleared: int = 0  # parked records cleared (their accounts rebuilt from the log)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "targets": list(self.targets),
            "events": self.events,
            "accounts": self.accounts,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events / self.seconds) if self.seconds else 0,
            "fold_seconds": round(self.fold_seconds, 3),
            "write_seconds": {k: round(v, 3) for k, v in self.write_seconds.items()},
            "ends": {str(p): end for p, end in sorted(self.ends.items())},
            "parked": self.parked,
            "cleared_parked": self.cleared,
            "notes": self.notes,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    settings: Settings
    ends: dict[int, int]
    targets: tuple[str, ...]
    directory: Path  # where the snapshot files go
    park: bool = True  # write dead-letter records for accounts that do not fold


@dataclass(slots=True)
class _Done:
    events: int
    accounts: list[str]  # every account the log holds in the job's partitions
    fold_seconds: float
    write_seconds: dict[str, float]
    parked: dict[str, str]


def _rebuild_job(job: _Job, tick: Tick | None) -> _Done:
    """Fold the job's partitions, then write each of their accounts once per target.

    The two projections are written side by side (one thread each): both mostly wait,
    on fsync and on Redis, so together they take about as long as the slower one.
    """
    settings = job.settings
    start = time.perf_counter()
    folded = fold_log(settings, job.ends, Folded(), tick=tick)
    fold_seconds = timed(start)
    writers = {"file": _write_file_job, "redis": _write_redis_job}
    with ThreadPoolExecutor(2, "tradelog-replay-target") as pool:
        futures = {t: pool.submit(writers[t], job, folded) for t in job.targets}
        writes = {t: f.result() for t, f in futures.items()}
    accounts = sorted(folded.folds.keys() | folded.poisoned.keys())
    parked = {a: bad.error for a, bad in folded.poisoned.items()}
    return _Done(folded.events, accounts, fold_seconds, writes, parked)


def _write_file_job(job: _Job, folded: Folded) -> float:
    start = time.perf_counter()
    sync = job.settings.fsync != "off"
    write_files(job.directory, folded.folds.items(), sync=sync)
    if job.park:
        park_files(job.settings, folded.poisoned, sync=sync)
    return timed(start)


def _write_redis_job(job: _Job, folded: Folded) -> float:
    start = time.perf_counter()
    settings = job.settings
    client, keys = redis_client(settings), Keys(settings.key_prefix)
    try:
        raced = save_redis(client, keys, folded, settings.partitions)
        if raced:
            scripts, ends = Scripts(client), dict(job.ends)
            for account in raced:
                _replace(settings, client, keys, scripts, folded, account, ends)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot write the Redis projection: {e}") from e
    finally:
        client.close()
    return timed(start)


FRESH_MS = 3000  # a heartbeat younger than this means a Redis projector is running
# Key kinds of the Redis projection under the prefix (the streams and bookkeeping stay).
_PROJECTION_KINDS = ("meta:", "offers:", "friend:", "friends:index:", "parked:events:")
_PROJECTION_NAMES = ("accounts", "parked")


def redis_projector_activity(client: redis.Redis, keys: Keys, partitions: int) -> str | None:
    """Why a Redis projector seems to run (a lease held, a fresh heartbeat), or None."""
    try:
        pipe = client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.exists(keys.lease(p))
        pipe.hget(keys.progress("redis"), "heartbeat")
        *leases, beat = pipe.execute()
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the Redis projector's state: {e}") from e
    held = sum(int(n) for n in leases)
    if held:
        return f"it holds the lease of {held} partitions"
    age = now_ms() - int(beat) if beat else None
    if age is not None and age < FRESH_MS:
        return f"its heartbeat is {age} ms old"
    return None


def clear_redis(client: redis.Redis, keys: Keys) -> int:
    """Delete the Redis projection's keys (accounts and parked records); return how many."""
    prefix = keys.prefix + ":"
    doomed: list[bytes] = []
    count = 0
    try:
        for key in client.scan_iter(match=f"{keys.prefix}:*", count=10_000):
            rest = key[len(prefix) :].decode(errors="replace")
            if rest.startswith(_PROJECTION_KINDS) or rest in _PROJECTION_NAMES:
                doomed.append(key)
            if len(doomed) >= 1000:
                count += int(client.unlink(*doomed))
                doomed = []
        if doomed:
            count += int(client.unlink(*doomed))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot clear the Redis projection: {e}") from e
    return count


def set_redis_positions(client: redis.Redis, keys: Keys, ends: dict[int, int]) -> None:
    """Move the Redis projector's group on each stream to the last replayed entry.

    Entries up to it are in the projection now: the group skips them (pending ones
    are acknowledged), so the daemon goes on with the next. The progress hash says
    the same to the API; its heartbeat is left alone (this is not the daemon).
    """
    group = keys.group()
    try:
        for p, end in sorted(ends.items()):
            stream, last = keys.log(p), f"0-{end}"  # offset end-1 has the entry id 0-end
            try:
                client.xgroup_create(stream, group, id=last, mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
                client.xgroup_setid(stream, group, last)
            while rows := client.xpending_range(stream, group, "-", last, 1000):
                client.xack(stream, group, *[row["message_id"] for row in rows])
        client.hset(keys.progress("redis"), mapping={str(p): end for p, end in ends.items()})
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot set the Redis projector's position: {e}") from e


def _merge(report: ReplayReport, done: Sequence[_Done]) -> set[str]:
    """Fold the workers' outcomes into the report; return every account of the log."""
    report.events = sum(d.events for d in done)
    report.accounts = sum(len(d.accounts) for d in done)
    # Workers run side by side: each phase took as long as its slowest worker.
    report.fold_seconds = max(d.fold_seconds for d in done)
    for target in report.targets:
        report.write_seconds[target] = max(d.write_seconds.get(target, 0.0) for d in done)
    for d in done:
        report.parked.update(d.parked)
    return {a for d in done for a in d.accounts}


def _snapshot_names(directory: Path) -> Iterator[tuple[str, Path]]:
    """(account, path) for each `<steamId>.json` in `directory`."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    except OSError as e:
        raise SnapshotUnavailable(f"cannot list {directory}: {e}") from e
    for name in names:
        if name.endswith(".json") and name[:-5].isdigit():
            yield name[:-5], directory / name


def _written_by_projector(path: Path) -> bool:
    """False for a file with no applied version: someone else's (legacy, never imported)."""
    held = _held(path)
    return held is not None and held > 0


def _drop_extra(settings: Settings, accounts: set[str], report: ReplayReport) -> None:
    """Remove snapshots of accounts the log does not hold (a projection of nothing)."""
    kept = 0
    for account, path in _snapshot_names(settings.snapshot_dir):
        if account in accounts:
            continue
        if _written_by_projector(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            report.notes.append(f"removed the snapshot of {account}: the log has no events of it")
        else:
            kept += 1
    if kept:
        report.notes.append(f"left {kept} files that no projector wrote (legacy, not imported)")


def rebuild(
    settings: Settings,
    targets: Sequence[str],
    *,
    force: bool = False,
    workers: int | None = None,
    meter: Meter | None = None,
) -> ReplayReport:
    """Rebuild whole projections in place, offline (their daemons stopped).

    The file projection's lock is held throughout (ProjectorBusy while its daemon
    runs); a running Redis projector is refused (ProjectorBusy) unless `force`. The
    Redis projection's old keys are deleted first: until the accounts are written
    again, Redis reads find them missing (offline means phase 2 reads wait too).
    """
    started = time.perf_counter()
    report = ReplayReport("offline", tuple(targets))
    check_partitions(settings)
    sync = settings.fsync != "off"
    keys = Keys(settings.key_prefix)
    lock = lock_projection(settings) if "file" in targets else -1
    client: redis.Redis | None = None
    try:
        if "redis" in targets:
            client = redis_client(settings)
            busy = redis_projector_activity(client, keys, settings.partitions)
            if busy and not force:
                raise ProjectorBusy(
                    f"a Redis projector is running ({busy}): stop it, or pass --force"
                )
        ends = report.ends = log_ends(settings)
        if meter is not None:
            meter.start(sum(ends.values()), "replaying " + " and ".join(targets))
        if client is not None:
            report.cleared += _count_parked(client, keys)
            clear_redis(client, keys)
        jobs = [_Job(settings, g, tuple(targets), settings.snapshot_dir) for g in
                split_partitions(ends, workers)]  # fmt: skip
        accounts = _merge(report, run_jobs(_rebuild_job, jobs, meter.advance if meter else None))
        if "file" in targets:
            _drop_extra(settings, accounts, report)
            for account in read_parks(settings):
                if account not in report.parked:
                    remove_park(settings, account)
                    report.cleared += 1
            old = read_checkpoint(settings)
            write_checkpoint(settings, Checkpoint(dict(ends), old.heartbeat, old.pid), sync=sync)
        if client is not None:
            set_redis_positions(client, keys, ends)
    finally:
        if lock >= 0:
            os.close(lock)
        if client is not None:
            client.close()
    report.seconds = timed(started)
    return report


def _count_parked(client: redis.Redis, keys: Keys) -> int:
    try:
        return int(client.hlen(keys.parked()))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the parked accounts: {e}") from e


# --- chosen accounts only (`--account`, verify --repair) -------------------------------------


@dataclass(slots=True)
class AccountResult:
    account: str
    version: int = 0  # the version the log holds (0: no events)
    done: dict[str, str] = field(default_factory=dict)  # target -> what was done
    unparked: dict[str, int] = field(default_factory=dict)  # target -> events re-applied
    error: str | None = None  # the fold still fails: the account stays parked

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "version": self.version,
            "done": self.done,
            "unparked": self.unparked,
            "error": self.error,
        }


def replay_accounts(
    settings: Settings, accounts: Sequence[str], targets: Sequence[str]
) -> list[AccountResult]:
    """Rebuild the chosen accounts' projections from the log and clear their parked records.

    Each account is folded from its partition and written whole, whatever the
    projection held (CAS-free): files under the projection's lock (ProjectorBusy
    while the file projector runs); Redis in a WATCHed transaction, so a Redis
    projector may keep running (its compare-and-set sees the new version). An
    account that still does not fold is left as it is, with `error` set.
    """
    wanted = list(dict.fromkeys(check_steam_id(a, "account") for a in accounts))
    check_partitions(settings)
    ends = log_ends(settings)
    parts = {partition_of(a, settings.partitions) for a in wanted}
    folded = Folded(wanted=frozenset(wanted))
    fold_log(settings, {p: ends[p] for p in parts}, folded)
    results = {a: AccountResult(a) for a in wanted}
    for account, result in results.items():
        fold = folded.folds.get(account)
        result.version = 0 if fold is None else int(fold.doc["version"])
        bad = folded.poisoned.get(account)
        if bad is not None:
            result.error = f"version {bad.events[0].version} does not apply: {bad.error}"
    good = [a for a in wanted if results[a].error is None]
    if "file" in targets:
        _accounts_file(settings, folded, good, results)
    if "redis" in targets:
        _accounts_redis(settings, folded, good, ends, results)
    return list(results.values())


def _accounts_file(
    settings: Settings, folded: Folded, accounts: list[str], results: dict[str, AccountResult]
) -> None:
    sync = settings.fsync != "off"
    lock = lock_projection(settings)
    try:
        write_snapshots(settings, [(a, folded.folds[a]) for a in accounts if a in folded.folds])
        for account in accounts:
            if account in folded.folds:
                results[account].done["file"] = "written"
            else:  # no events: the projection must not have it either (a foreign file stays)
                path = snapshot_path(settings, account)
                if _written_by_projector(path):
                    os.unlink(path)
                results[account].done["file"] = "removed"
            record = read_park(settings, account)
            if record is not None:
                remove_park(settings, account)
                results[account].unparked["file"] = len(record.events)
        if sync and accounts:
            fsync_dir(settings.snapshot_dir)
    except OSError as e:
        where = settings.snapshot_dir
        raise SnapshotUnavailable(f"cannot rebuild snapshots in {where}: {e}") from e
    finally:
        os.close(lock)


def _accounts_redis(
    settings: Settings,
    folded: Folded,
    accounts: list[str],
    ends: dict[int, int],
    results: dict[str, AccountResult],
) -> None:
    client = redis_client(settings)
    keys = Keys(settings.key_prefix)
    try:
        scripts = Scripts(client)
        applier = RedisApplier(client, keys)
        for account in accounts:
            _replace(settings, client, keys, scripts, folded, account, ends)
            results[account].done["redis"] = "written" if account in folded.folds else "removed"
            if client.hexists(keys.parked(), account):
                # Its waiting list may hold events newer than the log read here.
                results[account].unparked["redis"] = applier.reapply_parked(account)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot rebuild accounts in the Redis projection: {e}") from e
    finally:
        client.close()


def _replace(
    settings: Settings,
    client: redis.Redis,
    keys: Keys,
    scripts: Scripts,
    folded: Folded,
    account: str,
    ends: dict[int, int],
) -> None:
    """Replace one account's Redis keys with its fold, atomically (MULTI/EXEC, WATCHed).

    If the projection holds a later version than the fold, a projector may have applied
    events appended after the log was read: the fold reads on, and tries again. A
    version the log never reached is damage, and is replaced.
    """
    p = partition_of(account, settings.partitions)
    for _ in range(100):
        pipe: Any = client.pipeline(transaction=True)  # redis-py's Pipeline is untyped here
        try:
            pipe.watch(keys.meta(account))
            held = int(pipe.hget(keys.meta(account), "version") or 0)
            fold = folded.folds.get(account)
            if held > (0 if fold is None else int(fold.doc["version"])):
                end = log_end(partition_dir(settings.log_dir, p))
                if end > ends[p]:
                    fold_log(settings, {p: end}, folded, start={p: ends[p]})
                    ends[p] = end
                    continue
            friends = [
                keys.friend(account, f.decode()) for f in pipe.smembers(keys.friends_index(account))
            ]
            friends += pipe.scan_iter(match=keys.friend(account, "*"), count=1000)
            pipe.multi()
            pipe.delete(*_account_keys(keys, account), *friends)
            if fold is None:
                pipe.srem(keys.accounts(), account)
            else:
                position = folded.position(account, settings.partitions)
                call = save_call(keys, account, None, fold, 0, position)
                sha = scripts.sha[SAVE_DOCUMENT]
                pipe.execute_command("EVALSHA", sha, len(call.keys), *call.keys, *call.args)
                pipe.sadd(keys.accounts(), account)
            pipe.execute()
            return
        except redis.WatchError:
            continue  # a projector changed the account meanwhile: read it again
        finally:
            pipe.reset()
    raise RedisUnavailable(f"the Redis projection of {account} kept changing while replaced")


def _account_keys(keys: Keys, account: str) -> list[str]:
    return [
        keys.meta(account),
        keys.offers(account),
        keys.offers_index(account),
        keys.friends_index(account),
    ]


# --- live: a fresh copy beside the live one, then an atomic switch (files) --------------------

_PAUSE_WAIT_S = 5.0  # for a paused process to be seen stopped
_PAUSED_EVENTS = 2000  # at most this many events are caught up with the projector paused
_CATCH_UP_ROUNDS = 10


def replay_file_live(
    settings: Settings,
    *,
    workers: int | None = None,
    meter: Meter | None = None,
    catch_up_timeout: float = 60.0,
) -> ReplayReport:
    """Rebuild the file projection into `negotiations.replay-<n>` while reads go on, then
    switch `negotiations` (a symlink) to it atomically and drop the old copy.

    The long part (fold and write every account) runs beside a running file projector.
    For the switch the projector is stopped for a moment: if it does not run, its lock is
    taken; if it runs, it is paused (SIGSTOP/SIGCONT), every account it wrote since the
    copy began is brought to exactly the version it holds, files it is writing are moved
    along, and `negotiations` is switched while it cannot write. So it never writes a
    version older than the copy holds, and the copy misses nothing it wrote.
    """
    started = time.perf_counter()
    report = ReplayReport("live", ("file",))
    check_partitions(settings)
    link = settings.snapshot_dir
    if link.is_dir() and not link.is_symlink():
        _renameat2()  # fail now, not after the rebuild, if the first switch cannot be atomic
    fresh = _fresh_dir(link)
    ends = report.ends = log_ends(settings)
    if meter is not None:
        meter.start(sum(ends.values()), f"replaying file into {fresh.name}")
    try:
        jobs = [_Job(settings, g, ("file",), fresh, park=False) for g in
                split_partitions(ends, workers)]  # fmt: skip
        _merge(report, run_jobs(_rebuild_job, jobs, meter.advance if meter else None))
        try:
            lock = lock_projection(settings)
        except ProjectorBusy:
            old = _switch_paused(settings, fresh, ends, catch_up_timeout, report)
        else:
            try:
                old = _switch_locked(settings, fresh, ends, report)
            finally:
                os.close(lock)
    except BaseException:
        if not (link.is_symlink() and os.readlink(link) == fresh.name):  # not switched yet
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    report.seconds = timed(started)
    return report


def _fresh_dir(link: Path) -> Path:
    taken = [int(p.name.rsplit("-", 1)[1]) for p in link.parent.glob(f"{link.name}.replay-*")
             if p.name.rsplit("-", 1)[1].isdigit()]  # fmt: skip
    return link.with_name(f"{link.name}.replay-{max(taken, default=0) + 1}")


def _catch_up(
    settings: Settings,
    directory: Path,
    start: dict[int, int],
    ends: dict[int, int],
    ceiling: Callable[[str], int | None] | None = None,
) -> Folded:
    """Apply the events in [start, ends) to the snapshots in `directory`, each account
    up to `ceiling(account)` (None: all of them); write what changed."""
    by_account: dict[str, list[StoredEvent]] = {}
    for _, events in read_log(settings, ends, start):
        for event in events:
            by_account.setdefault(event.account, []).append(event)
    folded = Folded()
    for account, events in by_account.items():
        top = ceiling(account) if ceiling is not None else None
        fold = _load(directory / f"{account}.json")
        if fold is not None:
            folded.folds[account] = fold
        for event in events:
            if top is None or event.version <= top:
                folded.add(event)
    changed = [(a, f) for a, f in folded.folds.items() if a in folded.last]
    write_files(directory, changed, sync=settings.fsync != "off")
    return folded


def _load(path: Path) -> Fold | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotUnavailable(f"cannot read {path}: {e}") from e
    return decode(raw, str(path))


def _held(path: Path) -> int | None:
    """The version a snapshot holds (0: none); None when it cannot be read (damaged)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return 0
    except (OSError, orjson.JSONDecodeError):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return version if type(version) is int else None


def _switch_locked(
    settings: Settings, fresh: Path, ends: dict[int, int], report: ReplayReport
) -> Path | None:
    """No projector runs (we hold its lock): finish the copy to the log end, park what does
    not fold, switch, and set the checkpoint there."""
    sync = settings.fsync != "off"
    now = log_ends(settings)
    caught = _catch_up(settings, fresh, ends, now)
    report.ends = now
    # The accounts that do not fold, with every event from the failing one: a second,
    # narrow pass over their partitions (they are few).
    sick = Folded(wanted=frozenset(report.parked.keys() | caught.poisoned.keys()))
    parts = {partition_of(a, settings.partitions) for a in sick.wanted or ()}
    fold_log(settings, {p: now[p] for p in parts}, sick)
    report.parked = {a: bad.error for a, bad in sick.poisoned.items()}
    _carry_foreign(settings.snapshot_dir, fresh)
    old = _switch(settings.snapshot_dir, fresh)
    park_files(settings, sick.poisoned, sync=sync)
    for account in read_parks(settings):
        if account not in sick.poisoned:
            remove_park(settings, account)
            report.cleared += 1
    cp = read_checkpoint(settings)
    write_checkpoint(settings, Checkpoint(dict(now), cp.heartbeat, cp.pid), sync=sync)
    return old


def _carry_foreign(old_dir: Path, fresh: Path) -> None:
    """Keep files no projector wrote (legacy files never imported) across the switch."""
    for account, path in _snapshot_names(old_dir):
        target = fresh / f"{account}.json"
        if not target.exists() and not _written_by_projector(path):
            try:
                os.link(path, target)
            except OSError as e:
                raise SnapshotUnavailable(f"cannot keep {path} in {fresh}: {e}") from e


def _switch_paused(
    settings: Settings, fresh: Path, ends: dict[int, int], timeout: float, report: ReplayReport
) -> Path | None:
    """A file projector runs: bring the copy near the log end beside it, let it pass the
    copy, pause it, bring every account it wrote since to exactly its version, adopt its
    half-written files, switch, resume it. The pause lasts one short catch-up."""
    pid = _lock_holder(settings)
    start = ends
    for _ in range(_CATCH_UP_ROUNDS):  # while it runs: whatever arrived during the rebuild
        now = log_ends(settings)
        if sum(now.values()) - sum(start.values()) <= _PAUSED_EVENTS:
            break
        _catch_up(settings, fresh, start, now)
        start = now
    # Once it passed `start`, each account it holds is at or past the copy, and it only
    # ever writes later versions: the copy can be brought to exactly what it holds.
    _wait_for_projector(settings, start, timeout)
    old_dir = settings.snapshot_dir.resolve()
    with _paused(pid):
        now = log_ends(settings)
        _catch_up(settings, fresh, start, now, lambda a: _held(old_dir / f"{a}.json"))
        for name in os.listdir(old_dir):
            if name.startswith(".") and name.endswith(f".{pid}.tmp"):
                # Written but not yet renamed: its rename must land in the new copy.
                with contextlib.suppress(FileExistsError, FileNotFoundError):
                    os.link(old_dir / name, fresh / name)
        _carry_foreign(old_dir, fresh)
        old = _switch(settings.snapshot_dir, fresh)
    report.ends = now
    report.notes.append(
        f"the file projector (pid {pid}) was paused for the switch; its parked "
        "accounts stay parked (tradelog replay file --account ID)"
    )
    return old


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2() -> Callable[..., int]:
    """libc's renameat2, which swaps two paths atomically (RENAME_EXCHANGE)."""
    try:
        fn: Any = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        raise SnapshotUnavailable(
            "this system has no renameat2: the first live switch of a real snapshot "
            "directory cannot be atomic; replay offline once (or make it a symlink)"
        ) from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return cast(Callable[..., int], fn)


def _switch(link: Path, fresh: Path) -> Path | None:
    """Point `link` at `fresh` atomically; return the directory it showed before.

    A symlink is replaced by a new one (rename(2) is atomic). A real directory (the
    first switch) is exchanged with the new symlink in one renameat2 call, and then
    sits under the temp name; readers never find `link` missing.
    """
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(fresh.name, tmp)  # relative: the data dir may move
        if link.is_symlink():
            old: Path | None = link.parent / os.readlink(link)
            os.replace(tmp, link)
        elif link.is_dir():
            if _renameat2()(_AT_FDCWD, bytes(tmp), _AT_FDCWD, bytes(link), _RENAME_EXCHANGE):
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(link))
            old = tmp
        else:
            os.replace(tmp, link)
            old = None
    except OSError as e:
        raise SnapshotUnavailable(f"cannot switch {link} to {fresh.name}: {e}") from e
    fsync_dir(link.parent)
    return old


def _lock_holder(settings: Settings) -> int:
    """The pid holding the file projection's lock, from /proc/locks (never a guess)."""
    path = checkpoint_dir(settings) / "file.lock"
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SnapshotUnavailable(f"cannot find the file projector's process: {e}") from e
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE":
            major, minor, inode = parts[5].split(":")
            same = (int(major, 16), int(minor, 16), int(inode)) == (
                os.major(st.st_dev),
                os.minor(st.st_dev),
                st.st_ino,
            )
            if same and int(parts[4]) != os.getpid():
                return int(parts[4])
    raise ProjectorBusy(
        "the file projection is locked by this process or one that cannot be paused: "
        "stop the file projector, or replay offline"
    )


def _wait_for_projector(settings: Settings, ends: dict[int, int], timeout: float) -> None:
    """Until the running file projector's checkpoint reaches `ends` (woken by its bell)."""
    bell = Bell(settings.run_dir, PROGRESS)
    deadline = time.monotonic() + timeout
    try:
        while True:
            cp = read_checkpoint(settings)
            if all(cp.positions.get(p, 0) >= end for p, end in ends.items()):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProjectorBusy(
                    f"the file projector did not reach the copy's end within {timeout:.0f} s"
                )
            bell.wait(min(left, 1.0))  # a missed ring costs a second, never correctness
    finally:
        bell.close()


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    """SIGSTOP `pid` (it cannot write while stopped), SIGCONT it afterwards, always."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except OSError as e:
        raise ProjectorBusy(f"cannot pause the file projector (pid {pid}): {e}") from e
    try:
        deadline = time.monotonic() + _PAUSE_WAIT_S
        while _state(pid) not in ("T", "t", "X", "Z", None):
            if time.monotonic() > deadline:
                raise ProjectorBusy(f"the file projector (pid {pid}) did not stop")
            time.sleep(0.001)  # the kernel tells only a parent when a process stopped
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
