"""The file projection as replay writes and reads it back: snapshots and parked records.

Every replay mode (offline, per account, live) writes snapshots with the projector's
exact bytes and must tell the files a projector wrote from foreign ones (legacy files
never imported, which no rebuild may delete), so those rules live here once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from eventlog._exceptions import SnapshotUnavailable
from eventlog.settings import Settings

from .atomic import install
from .checkpoint import now_ms
from .durable import fsync_dir, make_dirs
from .file_parking import ParkRecord, write_park
from .fold import Fold
from .replay_fold import Poisoned
from .snapshot_writes import stage_snapshot
from .whole_reads import read_file

__all__ = [
    "held_version",
    "park_files",
    "snapshot_names",
    "write_files",
    "written_by_projector",
]

_WRITERS = 8  # snapshot writes in flight per process


def write_files(
    directory: Path, folds: Iterable[tuple[str, Fold]], *, sync: bool, writers: int = _WRITERS
) -> int:
    """Write each account's snapshot (the projector's exact bytes) into `directory`."""
    make_dirs(directory, sync=sync)

    where = os.fspath(directory)

    def one(item: tuple[str, Fold]) -> int:
        staged, _ = stage_snapshot(where, item[0], item[1], sync=sync, spare=False)
        install(staged)
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


def held_version(path: Path) -> int | None:
    """The version a snapshot holds (0: none); None when it cannot be read (damaged)."""
    try:
        raw = read_file(path)
        if raw is None:
            return 0
        doc = orjson.loads(raw)
    except (SnapshotUnavailable, orjson.JSONDecodeError):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return version if type(version) is int else None


def snapshot_names(directory: Path) -> Iterator[tuple[str, Path]]:
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


def written_by_projector(path: Path) -> bool:
    """False for a file with no applied version: someone else's (legacy, never imported)."""
    held = held_version(path)
    return held is not None and held > 0
