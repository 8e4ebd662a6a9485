"""The whole check: one pass over the log, split over worker processes as replay's is.

Before the pass each projection's own account of itself is read once (positions,
parked accounts, the accounts it holds), so every worker judges against the same
picture. Each worker then folds its partitions, walks their streams alongside, and
compares every account it folded or a projection holds; the reports are merged here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import cast

import orjson
import redis

from eventlog._exceptions import RedisUnavailable, SnapshotUnavailable
from eventlog.keys import Keys
from eventlog.log_end import log_ends
from eventlog.records import StoredEvent, partition_of
from eventlog.settings import Settings

from .checkpoint import check_partitions, read_checkpoint, running
from .file_parking import read_parks
from .redis_progress import projector_activity
from .replay_fold import Folded, Tick, fold_log
from .replay_jobs import Meter, run_jobs, split_partitions
from .replay_redis import redis_client
from .verify_compare import Judge, VerifyJob, consistent, held_files, held_redis
from .verify_report import Finding, StreamCheck, VerifyReport
from .verify_streams import StreamWalk

__all__ = ["verify"]

_READ_BATCH = 200  # accounts per pipelined read of the Redis projection


@dataclass(slots=True)
class _Found:
    events: int
    accounts: int
    streams: list[StreamCheck]
    agree: dict[str, int]
    findings: list[Finding]


def _verify_job(job: VerifyJob, tick: Tick | None) -> _Found:
    settings, keys = job.settings, Keys(job.settings.key_prefix)
    need_redis = job.streams or "redis" in job.projections
    client = redis_client(settings) if need_redis else None
    offsets: dict[str, list[int]] = {}
    walks: dict[int, StreamWalk] = {}
    if client is not None and job.streams:
        raw = redis.Redis(connection_pool=client.connection_pool)
        for command in ("XRANGE", "XREVRANGE"):  # flat replies: no dict per entry
            raw.set_response_callback(command, lambda reply, **options: reply)
        walks = {p: StreamWalk(raw, keys.log(p), p, end) for p, end in job.ends.items()}

    def observe(p: int, events: list[StoredEvent]) -> None:
        walk = walks.get(p)
        if walk is not None:
            walk.compare(events)
        for event in events:
            offsets.setdefault(event.account, []).append(event.offset)

    try:
        folded = fold_log(settings, job.ends, Folded(), tick=tick, observe=observe)
        now = log_ends(settings)
        streams = [walks[p].finish(now[p]) for p in sorted(walks)]
        judge = Judge(job, folded, offsets)
        for projection in job.projections:
            mine = folded.folds.keys() | folded.poisoned.keys() | set(job.present[projection])
            accounts = sorted(mine)
            for i in range(0, len(accounts), _READ_BATCH):
                batch = accounts[i : i + _READ_BATCH]
                if projection == "file":
                    held = held_files(settings, folded, batch)
                else:
                    held = held_redis(cast(redis.Redis, client), keys, batch)
                    flagged = [a for a in batch if a in judge.listing]
                    if flagged:
                        for account in consistent(cast(redis.Redis, client), keys, flagged):
                            del judge.listing[account]
                for account in batch:
                    judge.judge(projection, account, held[account])
        _read_on(job, folded, offsets, judge, now)
    except redis.RedisError as e:
        raise RedisUnavailable(f"verify cannot read Redis: {e}") from e
    finally:
        if client is not None:
            client.close()
    count = len(folded.folds.keys() | folded.poisoned.keys())
    return _Found(folded.events, count, streams, judge.agree, judge.findings)


def _read_on(
    job: VerifyJob, folded: Folded, offsets: dict[str, list[int]], judge: Judge, now: dict[int, int]
) -> None:
    """Judge again the accounts a projection holds ahead of the fold, after folding their
    events appended since the pass read the log."""
    if not judge.ahead:
        return
    wanted = frozenset(account for _, account, _ in judge.ahead)
    more = Folded(wanted=wanted)
    more.folds.update({a: f for a, f in folded.folds.items() if a in wanted})
    more.last.update({a: o for a, o in folded.last.items() if a in wanted})
    more.poisoned.update({a: b for a, b in folded.poisoned.items() if a in wanted})
    parts = {partition_of(a, job.settings.partitions) for a in wanted}

    def note(p: int, events: list[StoredEvent]) -> None:
        for event in events:
            if event.account in wanted:
                offsets.setdefault(event.account, []).append(event.offset)

    fold_log(job.settings, {p: now[p] for p in parts}, more, start=job.ends, observe=note)
    pending, judge.ahead, judge.folded = judge.ahead, [], more
    for projection, account, held in pending:
        judge.judge(projection, account, held, final=True)


def _redis_or_why(settings: Settings) -> tuple[redis.Redis | None, str | None]:
    if not settings.redis_enabled:
        return None, "Redis is disabled (TRADELOG_REDIS_URL is empty)"
    client = redis_client(settings)
    try:
        client.ping()
    except redis.RedisError as e:
        client.close()
        return None, f"Redis at {settings.redis_where} is unreachable: {e}"
    return client, None


def _stopped(settings: Settings, client: redis.Redis | None, keys: Keys) -> dict[str, str]:
    """The projections whose projector is not running: what they lag stays behind."""
    stopped = {}
    if not running(read_checkpoint(settings)):
        stopped["file"] = "the file projector is not running"
    if client is not None and projector_activity(client, keys, settings.partitions) is None:
        stopped["redis"] = "the Redis projector is not running"
    return stopped


def _file_state(settings: Settings) -> tuple[dict[int, int], dict[str, str], list[str]]:
    """The file projector's positions, parked accounts, and the accounts it holds."""
    try:
        names = os.listdir(settings.snapshot_dir)
    except FileNotFoundError:
        names = []
    except OSError as e:
        raise SnapshotUnavailable(f"cannot list {settings.snapshot_dir}: {e}") from e
    present = [n[:-5] for n in names if n.endswith(".json") and n[:-5].isdigit()]
    parked = {a: r.error for a, r in read_parks(settings).items()}
    return dict(read_checkpoint(settings).positions), parked, present


def _redis_state(
    client: redis.Redis, keys: Keys
) -> tuple[dict[int, int], dict[str, str], list[str], dict[str, str]]:
    """The Redis projector's positions, parked accounts, the accounts it holds, and those
    the accounts set gets wrong (a document it does not list, or a member without one)."""
    progress = cast(dict[bytes, bytes], client.hgetall(keys.progress("redis")))
    positions = {int(k): int(v) for k, v in progress.items() if k.isdigit()}
    parked = {
        k.decode(): str(orjson.loads(v).get("error", ""))
        for k, v in cast(dict[bytes, bytes], client.hgetall(keys.parked())).items()
    }
    head = len(keys.meta(""))  # "<prefix>:meta:{" + "}" around the account
    present = {
        key.decode()[head - 1 : -1] for key in client.scan_iter(match=keys.meta("*"), count=10_000)
    }
    listed = {m.decode() for m in cast(set[bytes], client.smembers(keys.accounts()))}
    listing = {a: f"not in {keys.accounts()}" for a in present - listed}
    listing |= {a: f"in {keys.accounts()} with no document" for a in listed - present}
    return positions, parked, sorted(a for a in present | listed if a.isdigit()), listing


def verify(
    settings: Settings,
    *,
    strict: bool = False,
    workers: int | None = None,
    meter: Meter | None = None,
) -> VerifyReport:
    """Compare the file log with the streams and each projection with the fold of the log."""
    check_partitions(settings)
    report = VerifyReport(strict)
    client, why = _redis_or_why(settings)
    keys = Keys(settings.key_prefix)
    try:
        states = {"file": _file_state(settings)}
        listing: dict[str, str] = {}
        if client is not None:
            held = _redis_state(client, keys)
            states["redis"], listing = held[:3], held[3]
        report.stopped = _stopped(settings, client, keys)
    except redis.RedisError as e:
        raise RedisUnavailable(f"verify cannot read Redis: {e}") from e
    finally:
        if client is not None:
            client.close()
    if why is not None:
        report.skipped = {"streams": why, "redis": why}
        report.unreachable = settings.redis_enabled
    ends = report.ends = log_ends(settings)
    if meter is not None:
        meter.start(sum(ends.values()), "verifying")
    jobs = []
    for group in split_partitions(ends, workers):
        present = {
            name: [a for a in state[2] if partition_of(a, settings.partitions) in group]
            for name, state in states.items()
        }
        positions = {name: state[0] for name, state in states.items()}
        parked = {name: state[1] for name, state in states.items()}
        mine = {a: w for a, w in listing.items() if partition_of(a, settings.partitions) in group}
        jobs.append(VerifyJob(settings, group, client is not None, tuple(states), positions,
                              parked, present, mine))  # fmt: skip
    found: list[_Found] = run_jobs(_verify_job, jobs, meter.advance if meter else None)
    report.events = sum(f.events for f in found)
    report.accounts = sum(f.accounts for f in found)
    report.streams = sorted((s for f in found for s in f.streams), key=lambda s: s.partition)
    report.agree = {name: sum(f.agree[name] for f in found) for name in states}
    report.findings = sorted(
        (x for f in found for x in f.findings), key=lambda x: (x.projection, x.account)
    )
    return report
