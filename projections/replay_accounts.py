"""Rebuilding chosen accounts only: `tradelog replay --account` and verify's repair.

Each account is folded from its partition alone and written whole, whatever the
projection held, and its parked record is cleared; an account that still does not
fold is left as it is. Being this narrow, it may run beside a Redis projector (the
writes are WATCHed transactions); the file projection's lock is still taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from eventlog._exceptions import RedisUnavailable, SnapshotUnavailable
from eventlog.events import check_steam_id
from eventlog.keys import Keys
from eventlog.log_end import log_ends
from eventlog.records import partition_of
from eventlog.settings import Settings

from .checkpoint import check_partitions, lock_projection
from .durable import fsync_dir
from .file_parking import read_park, remove_park
from .redis_applier import RedisApplier
from .redis_scripts import Scripts
from .replay_files import written_by_projector
from .replay_fold import Folded, fold_log
from .replay_redis import redis_client, replace_account
from .snapshot_writes import write_snapshots
from .snapshots import LEGACY_IN_PLACE, legacy_unimported, snapshot_path

__all__ = ["AccountResult", "replay_accounts"]


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
        # Rebuilt from a log without its import, it would replace the legacy document.
        legacy = {a for a in good if a in folded.folds and legacy_unimported(settings, a)}
        for account in legacy:
            results[account].error = LEGACY_IN_PLACE
        _accounts_file(settings, folded, [a for a in good if a not in legacy], results)
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
                if written_by_projector(path):
                    os.unlink(path)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path.with_name(f".{path.name}.spare"))
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
            replace_account(settings, client, keys, scripts, folded, account, ends)
            results[account].done["redis"] = "written" if account in folded.folds else "removed"
            if client.hexists(keys.parked(), account):
                # Its waiting list may hold events newer than the log read here.
                results[account].unparked["redis"] = applier.reapply_parked(account)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot rebuild accounts in the Redis projection: {e}") from e
    finally:
        client.close()
