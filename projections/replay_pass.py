"""One rebuild pass over the log: the job each worker runs, and the report it adds to.

Both whole-projection rebuilds (offline in place, and the live file copy) run the same
pass: each worker folds its partitions, then writes each of their accounts once per
target. They differ only in where the files go and what happens around the pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from eventlog._exceptions import RedisUnavailable
from eventlog.keys import Keys
from eventlog.settings import Settings

from .redis_scripts import Scripts
from .replay_files import park_files, write_files
from .replay_fold import Folded, Tick, fold_log
from .replay_redis import redis_client, replace_account, save_redis

__all__ = ["TARGETS", "PassDone", "PassJob", "ReplayReport", "merge", "rebuild_job", "timed"]

TARGETS = ("file", "redis")


def timed(start: float) -> float:
    return time.perf_counter() - start


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
class PassJob:
    settings: Settings
    ends: dict[int, int]
    targets: tuple[str, ...]
    directory: Path  # where the snapshot files go
    park: bool = True  # write dead-letter records for accounts that do not fold


@dataclass(slots=True)
class PassDone:
    events: int
    accounts: list[str]  # every account the log holds in the job's partitions
    fold_seconds: float
    write_seconds: dict[str, float]
    parked: dict[str, str]


def rebuild_job(job: PassJob, tick: Tick | None) -> PassDone:
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
    return PassDone(folded.events, accounts, fold_seconds, writes, parked)


def _write_file_job(job: PassJob, folded: Folded) -> float:
    start = time.perf_counter()
    sync = job.settings.fsync != "off"
    write_files(job.directory, folded.folds.items(), sync=sync)
    if job.park:
        park_files(job.settings, folded.poisoned, sync=sync)
    return timed(start)


def _write_redis_job(job: PassJob, folded: Folded) -> float:
    start = time.perf_counter()
    settings = job.settings
    client, keys = redis_client(settings), Keys(settings.key_prefix)
    try:
        raced = save_redis(client, keys, folded, settings.partitions)
        if raced:
            scripts, ends = Scripts(client), dict(job.ends)
            for account in raced:
                replace_account(settings, client, keys, scripts, folded, account, ends)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot write the Redis projection: {e}") from e
    finally:
        client.close()
    return timed(start)


def merge(report: ReplayReport, done: Sequence[PassDone]) -> set[str]:
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
