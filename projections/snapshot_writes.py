"""Writing snapshot files: encoded (snapshot_encode.py), put in place atomically, made durable.

A batch is written with one directory sync after all its files (`write_snapshots`);
the file projector stages a batch's files itself (`stage_snapshot`) so that one
filesystem sync makes them all durable before any of them is installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import Executor

from eventlog.settings import Settings

from .atomic import Staged, install, stage
from .durable import fsync_dir, make_dirs
from .fold import Fold
from .snapshot_encode import Memo, encode
from .snapshots import snapshot_file
from .tags import TagRefused, can_tag

__all__ = ["stage_snapshot", "write_snapshots"]


def write_snapshots(
    settings: Settings,
    folds: Iterable[tuple[str, Fold]],
    pool: Executor | None = None,
    *,
    sync: bool = True,
) -> dict[str, int]:
    """Write each account's snapshot, durably, then sync the directory once.

    With a pool the writes run in parallel: fsync releases the GIL, and the disk
    merges concurrent flushes. Returns each account's snapshot size in bytes.
    """

    def one(item: tuple[str, Fold]) -> tuple[str, int]:
        # Each account once: a temp file renamed, no spare or pool inode kept for a next
        # write (the pool is the projector thread's own, and would outlive this call).
        staged, size = stage_snapshot(directory, item[0], item[1], sync=sync, spare=False)
        install(staged)
        return item[0], size

    directory = os.fspath(settings.snapshot_dir)
    make_dirs(settings.snapshot_dir, sync=sync)
    sizes = dict(pool.map(one, folds) if pool is not None else map(one, folds))
    if sync and sizes:
        fsync_dir(settings.snapshot_dir)
    return sizes


def stage_snapshot(
    directory: str,
    account: str,
    fold: Fold,
    memo: Memo | None = None,
    *,
    sync: bool = False,
    spare: bool = True,
) -> tuple[Staged, int]:
    """Write one snapshot to be installed (see `atomic.stage`) in `directory`, the
    snapshot directory as text (a Path built per file cost the projector ~10% of its
    interpreter time); and its size in bytes."""
    data, tag = encode(fold, memo, tagged=can_tag(directory))
    path = snapshot_file(directory, account)
    try:
        return stage(path, data, sync=sync, spare=spare, tag=tag), len(data)
    except TagRefused:  # (more attributes than its filesystem takes): the layout before tags
        data, _ = encode(fold, memo, tagged=False)
        return stage(path, data, sync=sync, spare=spare), len(data)
