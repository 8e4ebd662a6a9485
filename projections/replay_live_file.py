"""`replay file --live`: a fresh copy of the file projection beside the live one, then a switch.

The copy is built by the same pass as the offline rebuild, into
`negotiations.replay-<n>`, while reads and the file projector go on. Then it is
brought level with the log (or with the running projector, paused for a moment) and
`negotiations`, a symlink, is switched to it atomically; the old copy is dropped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from eventlog._exceptions import ProjectorBusy, SnapshotUnavailable
from eventlog.log_end import log_ends
from eventlog.records import StoredEvent, partition_of
from eventlog.settings import Settings

from .checkpoint import (
    check_partitions,
    lock_projection,
    read_checkpoint,
    write_checkpoint,
)
from .file_parking import read_parks, remove_park
from .replay_files import (
    held_version,
    park_files,
    snapshot_names,
    write_files,
    written_by_projector,
)
from .replay_fold import Folded, fold_log, read_log
from .replay_jobs import Meter, run_jobs, split_partitions
from .replay_pass import PassJob, ReplayReport, merge, rebuild_job, timed
from .replay_switch import lock_holder, paused, renameat2, switch, wait_for_projector
from .snapshots import load_snapshot_file

__all__ = ["replay_file_live"]

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
        renameat2()  # fail now, not after the rebuild, if the first switch cannot be atomic
    fresh = _fresh_dir(link)
    ends = report.ends = log_ends(settings)
    if meter is not None:
        meter.start(sum(ends.values()), f"replaying file into {fresh.name}")
    try:
        jobs = [PassJob(settings, g, ("file",), fresh, park=False) for g in
                split_partitions(ends, workers)]  # fmt: skip
        merge(report, run_jobs(rebuild_job, jobs, meter.advance if meter else None))
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
        fold, _ = load_snapshot_file(directory / f"{account}.json")
        if fold is not None:
            folded.folds[account] = fold
        for event in events:
            if top is None or event.version <= top:
                folded.add(event)
    changed = [(a, f) for a, f in folded.folds.items() if a in folded.last]
    write_files(directory, changed, sync=settings.fsync != "off")
    return folded


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
    old = switch(settings.snapshot_dir, fresh)
    park_files(settings, sick.poisoned, sync=sync)
    for account in read_parks(settings):
        if account not in sick.poisoned:
            remove_park(settings, account)
            report.cleared += 1
    cp = read_checkpoint(settings)
    write_checkpoint(settings, replace(cp, positions=dict(now)), sync=sync)
    return old


def _carry_foreign(old_dir: Path, fresh: Path) -> None:
    """Keep files no projector wrote (legacy files never imported) across the switch."""
    for account, path in snapshot_names(old_dir):
        target = fresh / f"{account}.json"
        if not target.exists() and not written_by_projector(path):
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
    pid = lock_holder(settings)
    start = ends
    for _ in range(_CATCH_UP_ROUNDS):  # while it runs: whatever arrived during the rebuild
        now = log_ends(settings)
        if sum(now.values()) - sum(start.values()) <= _PAUSED_EVENTS:
            break
        _catch_up(settings, fresh, start, now)
        start = now
    # Once it passed `start`, each account it holds is at or past the copy, and it only
    # ever writes later versions: the copy can be brought to exactly what it holds.
    wait_for_projector(settings, start, timeout)
    old_dir = settings.snapshot_dir.resolve()
    with paused(pid):
        now = log_ends(settings)
        _catch_up(settings, fresh, start, now, lambda a: held_version(old_dir / f"{a}.json"))
        for name in os.listdir(old_dir):
            if name.startswith(".") and name.endswith((f".{pid}.tmp", ".spare")):
                # Maybe written but not yet put in place: its rename (or its exchange,
                # for a spare) must land in the new copy.
                with contextlib.suppress(FileExistsError, FileNotFoundError):
                    os.link(old_dir / name, fresh / name)
        _carry_foreign(old_dir, fresh)
        old = switch(settings.snapshot_dir, fresh)
    report.ends = now
    report.notes.append(
        f"the file projector (pid {pid}) was paused for the switch; its parked "
        "accounts stay parked (tradelog replay file --account ID)"
    )
    return old
