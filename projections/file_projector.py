"""The file projector: tails every partition's file log into the snapshot files.

It needs no Redis, so phase-1 reads never depend on it. A step takes the events
available (round-robin over partitions), folds them into the touched accounts'
Folds (kept in a bounded LRU cache, loaded from the snapshot on a miss), writes
each touched account's snapshot once (atomic.py: a temp file or the account's
spare, made durable, put in place) and rings `progress` as soon as they are in
place. Then their directory is synced and the checkpoint written: at most every
SAVE_EVERY_S while events keep coming, at once when they stop. Every snapshot
carries its version, so events at or below it are skipped: a crash anywhere
only causes redelivery, never a double apply.

An account whose event cannot be applied (the fold raises, its version leaves
a gap, its snapshot is unreadable) is parked: its later events wait, in order,
in a dead-letter record while every other account goes on.

The Folds' cache is in file_cache, re-applying a parked account in file_parked.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import orjson

from eventlog._exceptions import (
    CheckpointAhead,
    PartitionMismatch,
    ProjectionGap,
    SnapshotUnavailable,
)
from eventlog.notify import APPENDED, PROGRESS, Bell, Ringer
from eventlog.records import StoredEvent
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings

from . import fscalls
from .atomic import Staged, fsync_dir, install, make_dirs
from .checkpoint import (
    Checkpoint,
    ParkRecord,
    check_partitions,
    lock_projection,
    now_ms,
    parked,
    progress,
    read_checkpoint,
    read_parks,
    sweep_temp_files,
    write_checkpoint,
    write_park,
)
from .file_cache import Cache, Entry
from .file_parked import reapply_parked
from .fold import Fold, apply
from .gcpause import paused
from .snapshots import load_snapshot, stage_snapshot, write_snapshot

__all__ = ["FileProjector", "parked", "progress", "reapply_parked"]

log = logging.getLogger("tradelog.projector.file")

# Snapshot bytes of the Folds kept in memory (their objects take ~3x that): 128 MiB keeps
# a few thousand busy accounts hot and the projector's RSS bounded however long the log.
CACHE_BYTES = 128 << 20
WRITERS = 8  # parallel snapshot writes: the disk merges concurrent fsyncs
POOL_FILES = 64  # a batch of fewer snapshots is written in this thread
SAVE_EVERY_S = 0.05  # checkpoints while busy, at most
SAVE_IDLE_S = 0.005  # how long an idle projector waits for more before its checkpoint
_SAVED = float("inf")  # _unsaved_since when everything in place is checkpointed
STEP_BYTES = 64 << 20  # log bytes one step reads at most, whatever its event limit


@dataclass(slots=True)
class _Batch:
    """One step's outcome until it is durable: Folds to write, parked accounts, positions."""

    folds: dict[str, Fold]
    parks: set[str]
    positions: dict[int, int]
    futures: list[Future[tuple[Staged, int]]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    staged: list[Staged] = field(default_factory=list)  # written, unsynced (see _install)
    rung: bool = False  # its progress is announced


class FileProjector:
    name = "file"

    def __init__(
        self,
        settings: Settings,
        *,
        cache_bytes: int = CACHE_BYTES,
        writers: int = WRITERS,
        freeze_gc: bool = False,
    ) -> None:
        """`freeze_gc`: this process is only the projector (see gcpause.paused)."""
        self.settings = settings
        self.freeze_gc = freeze_gc
        self.sync = settings.fsync != "off"
        # Without syncfs each staged file is fsynced on its own before it is installed.
        self._fsync_each = self.sync and not fscalls.available()
        check_partitions(settings)
        self._lock_fd = lock_projection(settings)
        try:
            cp = read_checkpoint(settings)
            if any(p >= settings.partitions for p in cp.positions):
                raise PartitionMismatch(
                    f"the checkpoint has partitions beyond {settings.partitions}"
                )
            self.positions = {p: cp.positions.get(p, 0) for p in range(settings.partitions)}
            self.cursors = [self._cursor(p) for p in range(settings.partitions)]
            self.parks = read_parks(settings)
            sweep_temp_files(settings)
            make_dirs(settings.snapshot_dir, sync=self.sync)
            self.bell = Bell(settings.run_dir, APPENDED)
            self.ringer = Ringer(settings.run_dir, PROGRESS)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._pending: list[list[StoredEvent]] = [[] for _ in range(settings.partitions)]
        self._turn = 0
        self._cache = Cache(cache_bytes)
        self._pool = ThreadPoolExecutor(writers, "tradelog-snapshot") if writers > 1 else None
        self._flight: _Batch | None = None
        self._unsaved_since = _SAVED  # when the positions first moved past the checkpoint
        self._dir_dirty = False  # snapshots renamed since the directory was last synced
        self.applied = self.skipped = self.parked_events = 0

    def _cursor(self, p: int) -> Cursor:
        cursor = Cursor(partition_dir(self.settings.log_dir, p), p, self.positions[p])
        if cursor.next_offset < self.positions[p]:
            cursor.close()
            raise CheckpointAhead(
                f"the checkpoint says partition {p} is applied up to offset "
                f"{self.positions[p]} but its log ends at {cursor.next_offset}"
            )
        return cursor

    def _take(self, limit: int) -> list[StoredEvent]:
        """Up to `limit` available events, partitions in turn (each in its own order).

        Bounded in bytes too: whole-document events can be megabytes each.
        """
        out: list[StoredEvent] = []
        budget = STEP_BYTES
        n = self.settings.partitions
        start, self._turn = self._turn, (self._turn + 1) % n
        for i in range(n):
            p = (start + i) % n
            cursor = self.cursors[p]
            while (want := limit - len(out)) > 0 and budget > 0:
                pending = self._pending[p]
                if not pending:
                    base, pos = cursor.base, cursor.pos
                    # limit=1: one read chunk (or one long line) per call, so the
                    # budget is checked at least every few megabytes.
                    pending, _ = cursor.read(limit=1)
                    if not pending:
                        break
                    budget -= cursor.pos - (pos if cursor.base == base else 0)
                out.extend(pending[:want])
                self._pending[p] = pending[want:]
        return out

    def _entry(self, account: str) -> Entry:
        entry = self._cache.get(account)
        if entry is None:
            fold, size = load_snapshot(self.settings, account)
            entry = self._cache.add(account, fold, size or 1024)
        return entry

    def _park(self, event: StoredEvent, held: int, error: str) -> None:
        record = ParkRecord(event.account, event.version, held, error, now_ms(), [event])
        self.parks[event.account] = record

    def _one(self, event: StoredEvent, dirty: dict[str, Fold], parks: set[str]) -> None:
        account = event.account
        record = self.parks.get(account)
        if record is not None:
            if event.version <= record.last_version:
                self.skipped += 1  # redelivered after a crash: already waiting
            else:
                record.events.append(event)
                parks.add(account)
                self.parked_events += 1
            return
        held = 0
        try:
            entry = self._entry(account)
            state = entry.fold
            held = 0 if state is None else int(state.doc["version"])
            if event.version <= held:
                self.skipped += 1
                return
            if event.version != held + 1:
                raise ProjectionGap(account, held, event.version)
            new = apply(state, event)
        except SnapshotUnavailable:
            raise  # the disk, not the account: stop, a restart retries
        except ProjectionGap as e:
            where = f"p{event.partition}:{event.offset}"
            log.error("PARKED %s: %s (%s); its later events wait", account, e, where)
            self._park(event, held, str(e))
        except Exception as e:  # a poison event (a bug) or a damaged snapshot: park, go on
            where = f"v{event.version} at p{event.partition}:{event.offset}"
            log.exception("PARKED %s: event %s does not apply", account, where)
            self._park(event, held, f"{type(e).__name__}: {e}")
        else:
            entry.fold = new
            dirty[account] = new
            self.applied += 1
            return
        parks.add(account)
        self.parked_events += 1

    def step(self, max_events: int) -> int:
        """Fold the available events while the previous batch's snapshots are written.

        The fold is Python (one core), the writes are mostly kernel work (the other):
        batch N+1 is folded while batch N's files go to disk, then N is finished
        (its files in place, progress rung) and N+1's writes start. A step that
        finds nothing finishes the batch in flight: burst mode and the daemon's
        idle wait never leave one behind. The checkpoint follows (see `_save`).
        """
        with paused(self.freeze_gc):
            events = self._take(max(1, max_events))
            if not events:
                self._finish()
                return 0
            batch = _Batch(
                {}, set(), dict(self._flight.positions if self._flight else self.positions)
            )
            for event in events:
                self._one(event, batch.folds, batch.parks)
                batch.positions[event.partition] = event.offset + 1
            self._finish()
            self._start(batch)
            if time.monotonic() - self._unsaved_since >= SAVE_EVERY_S:
                self._save()
            return len(events)

    def _start(self, batch: _Batch) -> None:
        items = self._cache.items
        folds = batch.folds
        stage = partial(stage_snapshot, self.settings, sync=self._fsync_each)
        self._dir_dirty |= bool(folds)
        if len(folds) == 1 and self.sync:  # the live case: its own fsync, no filesystem flush
            write = partial(write_snapshot, self.settings)
            batch.sizes = {a: write(a, f, items[a].memo) for a, f in folds.items()}
            self._announce(batch, early=True)
        elif self._pool is None or len(folds) < POOL_FILES:
            # A few files: written here (a thread hop costs more than overwriting a spare),
            # made durable together, put in place, rung at once.
            written = [stage(a, f, items[a].memo) for a, f in folds.items()]
            batch.staged = [staged for staged, _ in written]
            batch.sizes = dict(zip(folds, (size for _, size in written), strict=True))
            self._install(batch)
            self._announce(batch, early=True)
        else:
            # Many files (a catch-up): written by the pool while the next batch is folded,
            # without spares: most are still resting, and new files cost little with no
            # writer's fsync waiting on the same journal (bench project: ~8% faster).
            pool = self._pool
            stage = partial(stage, spare=False)
            batch.futures = [pool.submit(stage, a, f, items[a].memo) for a, f in folds.items()]
        self._flight = batch
        # Accounts being written stay cached: reading their snapshot now would see the old one.
        self._cache.trim(keep=folds)

    def _finish(self) -> None:
        """Put the batch in flight in place and ring its progress; it is checkpointed later."""
        batch, self._flight = self._flight, None
        if batch is None:
            return
        if batch.futures:
            written = [f.result() for f in batch.futures]
            batch.staged = [staged for staged, _ in written]
            batch.sizes = dict(zip(batch.folds, (size for _, size in written), strict=True))
            self._install(batch)
        self._announce(batch, early=True)
        for account, size in batch.sizes.items():
            self._cache.resize(account, size)
        if batch.parks:
            # Its accounts' earlier events are skipped as waiting after a crash: the
            # snapshots they reached must be durable before the dead-letter records.
            self._sync_dir()
            parks = [self.parks[a] for a in sorted(batch.parks)]
            write_park(self.settings, parks, sync=self.sync)
        if self.positions != batch.positions:
            self.positions = batch.positions
            self._unsaved_since = min(self._unsaved_since, time.monotonic())
        self._announce(batch)

    def _save(self) -> None:
        """Checkpoint what is in place, its directory synced first so that the renames the
        checkpoint counts on are durable. While events keep coming, once per
        `SAVE_EVERY_S` at most: each sync waits on the journal the writers' fsyncs share."""
        if self._unsaved_since != _SAVED:
            self._sync_dir()
            self._write_checkpoint()

    def _sync_dir(self) -> None:
        if self.sync and self._dir_dirty:
            fsync_dir(self.settings.snapshot_dir)
        self._dir_dirty = False

    def _install(self, batch: _Batch) -> None:
        """Make every staged file durable with one syncfs, then put each in place: as
        with an fsync per file, no snapshot is replaced by one that is not on disk."""
        if self.sync and not self._fsync_each and batch.staged:
            try:
                fscalls.syncfs(self.settings.snapshot_dir)
            except OSError as e:
                raise SnapshotUnavailable(f"cannot sync {self.settings.snapshot_dir}: {e}") from e
        for staged in batch.staged:
            install(staged)

    def _announce(self, batch: _Batch, early: bool = False) -> None:
        """Ring the batch's progress once its snapshots are in place.

        In place is enough for read-your-writes: a GET now sees them. Their directory
        sync and the checkpoint come after, so a power cut before them only makes the
        projector apply the batch again (skipped by version), never skip it. A batch
        that parks accounts rings only at the end, once its dead-letter records are written.
        """
        if batch.rung or (early and batch.parks):
            return
        batch.rung = True
        positions = {str(p): o for p, o in batch.positions.items()}
        payload = orjson.dumps({"projector": self.name, "positions": positions})
        self.ringer.ring(payload)

    def _write_checkpoint(self) -> None:
        cp = Checkpoint(dict(self.positions), now_ms(), os.getpid())
        write_checkpoint(self.settings, cp, sync=self.sync)
        self._unsaved_since = _SAVED

    def idle(self, timeout: float) -> None:
        if self._unsaved_since != _SAVED:  # checkpoint, unless more work comes at once
            if self.bell.wait(min(timeout, SAVE_IDLE_S)):
                return
            self._save()
        self.bell.wait(timeout)

    def heartbeat(self) -> None:
        self._sync_dir()
        self._write_checkpoint()

    def summary(self) -> str:
        """Counts for the command's exit line."""
        return (
            f"applied {self.applied}, skipped {self.skipped} already applied, "
            f"parked {self.parked_events}; {len(self.parks)} accounts parked"
        )

    def close(self) -> None:
        try:
            self._finish()
            self._save()
        finally:
            self._release()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.bell.close()
        self.ringer.close()
        for cursor in self.cursors:
            cursor.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
