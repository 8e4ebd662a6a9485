"""The offline rebuild: whole projections rebuilt in place while their daemons are stopped.

Around the one pass of `replay_pass` this sets the stage and finishes the job: the
file projection's lock is held (its daemon must not run), a running Redis projector
is refused unless forced, Redis's old keys are deleted first, snapshots of accounts
the log does not hold are removed, old parked records are cleared, and each
projector's position is set to the log end the pass stopped at, so its daemon goes
on from there without applying anything again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import replace

import redis

from eventlog._exceptions import ProjectorBusy
from eventlog.keys import Keys
from eventlog.log_end import log_ends
from eventlog.settings import Settings

from .checkpoint import (
    check_partitions,
    lock_projection,
    read_checkpoint,
    write_checkpoint,
)
from .file_parking import read_parks, remove_park
from .redis_parking import parked_accounts
from .redis_progress import projector_activity
from .replay_accounts import replay_accounts
from .replay_files import snapshot_names, written_by_projector
from .replay_jobs import Meter, run_jobs, split_partitions
from .replay_pass import PassJob, ReplayReport, merge, rebuild_job, timed
from .replay_redis import (
    clear_redis,
    count_parked,
    redis_client,
    set_redis_positions,
)

__all__ = ["rebuild"]


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
    raced: list[str] = []
    busy: str | None = None
    try:
        if "redis" in targets:
            client = redis_client(settings)
            busy = projector_activity(client, keys, settings.partitions)
            if busy and not force:
                raise ProjectorBusy(
                    f"a Redis projector is running ({busy}): stop it, or pass --force"
                )
        ends = report.ends = log_ends(settings)
        if meter is not None:
            meter.start(sum(ends.values()), "replaying " + " and ".join(targets))
        if client is not None:
            report.cleared += count_parked(client, keys)
            clear_redis(client, keys)
        jobs = [PassJob(settings, g, tuple(targets), settings.snapshot_dir) for g in
                split_partitions(ends, workers)]  # fmt: skip
        accounts = merge(report, run_jobs(rebuild_job, jobs, meter.advance if meter else None))
        if "file" in targets:
            _drop_extra(settings, accounts, report)
            for account in read_parks(settings):
                if account not in report.parked:
                    remove_park(settings, account)
                    report.cleared += 1
            old = read_checkpoint(settings)
            write_checkpoint(settings, replace(old, positions=dict(ends)), sync=sync)
        if client is not None:
            set_redis_positions(client, keys, ends)
            # Forced beside a running projector: it parked the accounts it found emptied.
            raced = sorted(parked_accounts(client, keys) - set(report.parked)) if busy else []
    finally:
        if lock >= 0:
            os.close(lock)
        if client is not None:
            client.close()
    if raced:
        _rebuild_raced(settings, raced, report)
    report.seconds = timed(started)
    return report


def _rebuild_raced(settings: Settings, accounts: list[str], report: ReplayReport) -> None:
    """Rebuild, one by one beside the running projector, the accounts it parked while the
    replay had emptied them (it found events above a version 0); one that still does not
    fold stays parked, and the replay says so."""
    for result in replay_accounts(settings, accounts, ("redis",)):
        if result.error is not None:
            report.parked[result.account] = result.error
    report.notes.append(
        f"the running Redis projector parked {len(accounts)} accounts it found emptied "
        "meanwhile: rebuilt them one by one"
    )


def _drop_extra(settings: Settings, accounts: set[str], report: ReplayReport) -> None:
    """Remove snapshots of accounts the log does not hold (a projection of nothing)."""
    kept = 0
    for account, path in snapshot_names(settings.snapshot_dir):
        if account in accounts:
            continue
        if written_by_projector(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            report.notes.append(f"removed the snapshot of {account}: the log has no events of it")
        else:
            kept += 1
    if kept:
        report.notes.append(f"left {kept} files that no projector wrote (legacy, not imported)")
