"""The file projector's write side: each batch's snapshots put in place, rung, checkpointed.

A batch is one step's outcome: the touched accounts' Folds, the accounts it
parked, the positions it reaches. Its snapshots are written (atomic.py), made
durable and put in place, then its progress is rung: in place is enough for
read-your-writes. Their directory sync and the checkpoint come after, at most
every SAVE_EVERY_S while events keep coming (each sync waits on the journal the
writers' fsyncs share) and at once when they stop: a crash before them only makes
the projector apply the batch again, skipped by version, never skip it.

How a batch is written depends on its size. One file (the live case) gets its
own fsync. A few are written in the projector's thread, through their spares,
and made durable with one syncfs. Many (a catch-up) are written by a pool while
the next batch is folded, with temp files, and put in place when it is done.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import orjson

from eventlog._exceptions import SnapshotUnavailable
from eventlog.notify import PROGRESS, Ringer
from eventlog.settings import Settings

from . import fscalls
from .atomic import Staged, drop_temps, install, retire
from .checkpoint import PROJECTOR, Checkpoint, now_ms, pid_namespace, write_checkpoint
from .durable import covers_log, fsync_dir, fsync_file, sync_all
from .file_cache import Cache
from .file_parking import ParkRecord, write_park
from .fold import Fold
from .snapshot_writes import stage_snapshot

__all__ = ["Batch", "Writes"]

WRITERS = 8  # parallel snapshot writes for a catch-up
POOL_FILES = 64  # a batch of fewer snapshots is written in the projector's thread
SAVE_EVERY_S = 0.05  # checkpoints while busy, at most
SAVE_IDLE_S = 0.005  # how long an idle projector waits for more before its checkpoint
_SAVED = float("inf")  # Writes.unsaved_since when everything in place is checkpointed
_NO_SYNCFS = (errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP)


@dataclass(slots=True)
class Batch:
    """One step's outcome until it is in place: Folds to write, parked accounts, positions."""

    folds: dict[str, Fold]
    parks: set[str]
    positions: dict[int, int]
    futures: list[Future[tuple[Staged, int]]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    staged: list[Staged] = field(default_factory=list)  # written, not yet durable or in place
    rung: bool = False  # its progress is announced
    read: set[int] = field(default_factory=set)  # the partitions whose lines it folded
    dirty_bytes: int = 0  # the last snapshot sizes of the accounts in `folds`

    def written(self, files: list[tuple[Staged, int]]) -> None:
        """Take each fold's staged file and size, in the folds' order."""
        self.staged = [staged for staged, _ in files]
        self.sizes = dict(zip(self.folds, (size for _, size in files), strict=True))


class Writes:
    """Writes the batches the projector folds; at most one is in flight (the pool's)."""

    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        parks: dict[str, ParkRecord],
        positions: dict[int, int],
        writers: int = WRITERS,
        log_sync: Callable[[Iterable[int]], None] | None = None,
    ) -> None:
        """`log_sync`: makes what was read of some partitions durable (Tail.sync): writers
        ring before they sync, and nothing is put in place before its events are durable."""
        self.settings = settings
        self.sync = settings.fsync != "off"
        self._dir = os.fspath(settings.snapshot_dir)
        self._pidns = pid_namespace()
        # Without syncfs each staged file is fsynced on its own before it is installed.
        self._fsync_each = self.sync and not fscalls.available()
        self._cache = cache
        self._parks = parks  # the projector's: the records of parked accounts
        self.positions = positions  # of the batches in place
        self.ringer = Ringer(settings.run_dir, PROGRESS)
        self._pool = ThreadPoolExecutor(writers, "tradelog-snapshot") if writers > 1 else None
        self.flight: Batch | None = None
        self.unsaved_since = _SAVED  # when the positions first moved past the checkpoint
        self._dir_dirty = False  # snapshots renamed since the directory was last synced
        self._log_sync = log_sync
        # Every line the projector read before a syncfs of the snapshots' filesystem is
        # durable after it, if the log lives there too (None: not known yet).
        self._log_beside: bool | None = None
        self._fs_fd = -1  # the snapshot directory, for its syncfs

    def batch(self) -> Batch:
        """An empty batch that starts where the last one (even in flight) ends."""
        return Batch({}, set(), dict(self.flight.positions if self.flight else self.positions))

    def start(self, batch: Batch) -> None:
        """Write a batch: at once (its progress rung), or in the pool until `finish`."""
        items = self._cache.items
        folds = batch.folds
        # Unsynced (fsync off), spares never count as durable; and an exchanged temp file
        # lacks the flush a rename over a file gets on ext4: new files, renamed.
        stage = partial(stage_snapshot, self._dir, sync=self._fsync_each, spare=self.sync)
        if len(folds) == 1 and self.sync:  # the live case: its own fsync, no filesystem flush
            [(account, fold)] = folds.items()
            staged, size = stage_snapshot(self._dir, account, fold, items[account].memo, sync=True)
            self._log_durable(batch)
            install(staged)
            batch.sizes = {account: size}
            self._dir_dirty = True
            self._announce(batch, early=True)
            retire()
        elif self._pool is None or len(folds) < POOL_FILES:
            # A thread hop costs more than overwriting a spare.
            batch.written([stage(a, f, items[a].memo) for a, f in folds.items()])
            self._install(batch)
            self._announce(batch, early=True)
            retire()
        else:
            # No spares: most are still resting, and new files cost little with no writer's
            # fsync waiting on the same journal (bench project: ~8% faster).
            pool = self._pool
            stage = partial(stage, spare=False)
            batch.futures = [pool.submit(stage, a, f, items[a].memo) for a, f in folds.items()]
        self.flight = batch
        # Accounts being written stay cached: reading their snapshot now would see the old one.
        self._cache.trim(keep=folds)

    def finish(self) -> None:
        """Put the batch in flight in place and ring its progress; it is checkpointed later."""
        batch, self.flight = self.flight, None
        if batch is None:
            return
        if batch.futures:
            batch.written([f.result() for f in batch.futures])
            self._install(batch)
        self._announce(batch, early=True)
        for account, size in batch.sizes.items():
            self._cache.resize(account, size)
        if batch.parks:
            # Its accounts' earlier events are skipped as waiting after a crash: the
            # snapshots they reached must be durable before the dead-letter records.
            self._sync_dir()
            self._log_durable(batch)
            records = [self._parks[a] for a in sorted(batch.parks)]
            write_park(self.settings, records, sync=self.sync)
        if self.positions != batch.positions:
            self.positions = batch.positions
            self.unsaved_since = min(self.unsaved_since, time.monotonic())
        self._announce(batch)

    def _install(self, batch: Batch) -> None:
        """Make every staged file durable with one syncfs, then put each in place: as
        with an fsync per file, no snapshot is replaced by one that is not on disk."""
        flushed = False  # the whole filesystem: the log's lines too, if it is the same
        if self.sync and not self._fsync_each and batch.staged:
            try:
                if self._fs_fd < 0:  # kept open: see fscalls.syncfs
                    self._fs_fd = os.open(self.settings.snapshot_dir, os.O_RDONLY)
                sync_all(self.settings.snapshot_dir, self._fs_fd)
            except OSError as e:
                if e.errno not in _NO_SYNCFS:
                    where = self.settings.snapshot_dir
                    raise SnapshotUnavailable(f"cannot sync {where}: {e}") from e
                self._fsync_each = True  # refused here (a sandbox): one fsync per file
                for staged in batch.staged:
                    fsync_file(staged.tmp)
            else:
                if self._log_beside is None:
                    self._log_beside = covers_log(self.settings)
                flushed = bool(self._log_beside)
        if not flushed:  # (an fdatasync after a syncfs still waits on the writers' lines)
            self._log_durable(batch)
        for staged in batch.staged:
            install(staged)
        self._dir_dirty |= bool(batch.staged)

    def _log_durable(self, batch: Batch) -> None:
        """The lines the batch folded made durable (a syncfs did already; then it costs
        a system call per partition)."""
        if self.sync and self._log_sync is not None and batch.read:
            self._log_sync(batch.read)

    def _announce(self, batch: Batch, early: bool = False) -> None:
        """Ring the batch's progress once its snapshots are in place; a batch that parks
        accounts only once its dead-letter records are written."""
        if batch.rung or (early and batch.parks):
            return
        batch.rung = True
        positions = {str(p): o for p, o in batch.positions.items()}
        self.ringer.ring(orjson.dumps({"projector": PROJECTOR, "positions": positions}))

    @property
    def saved(self) -> bool:
        return self.unsaved_since == _SAVED

    def save_if_due(self) -> None:
        if time.monotonic() - self.unsaved_since >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Checkpoint what is in place, if anything moved since the last checkpoint."""
        if not self.saved:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the checkpoint (and heartbeat), the directory synced first so that the
        renames it counts on are durable."""
        self._sync_dir()
        cp = Checkpoint(dict(self.positions), now_ms(), os.getpid(), self._pidns)
        write_checkpoint(self.settings, cp, sync=self.sync)
        self.unsaved_since = _SAVED

    def _sync_dir(self) -> None:
        if self.sync and self._dir_dirty:
            fsync_dir(self.settings.snapshot_dir)
        self._dir_dirty = False

    def close(self) -> None:
        try:
            self.finish()
            self.save()
            drop_temps()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            if self._fs_fd >= 0:
                os.close(self._fs_fd)
                self._fs_fd = -1
            self.ringer.close()
