"""The file projector: tails every partition's file log into the snapshot files.

It needs no Redis, so phase-1 reads never depend on it. A step takes the events
available (round-robin over partitions), folds them into the touched accounts'
Folds (kept in a bounded LRU cache, loaded from the snapshot on a miss), writes
each touched account's snapshot once and rings `progress` as soon as they are
in place, checkpointing after (file_writes). Every snapshot carries its version,
so events at or below it are skipped: a crash anywhere only causes redelivery,
never a double apply.

An account whose event cannot be applied (the fold raises, its version leaves
a gap, its snapshot is unreadable) is parked: its later events wait, in order,
in a dead-letter record while every other account goes on.

Reading the logs is in file_tail, the Folds' cache in file_cache, re-applying a
parked account in file_parked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from eventlog._exceptions import (
    LegacyNotImported,
    PartitionMismatch,
    ProjectionGap,
    SnapshotUnavailable,
)
from eventlog.notify import APPENDED, Bell, rung_partitions
from eventlog.records import LEGACY_IMPORTED, StoredEvent
from eventlog.settings import Settings

from .checkpoint import check_partitions, lock_projection, now_ms, read_checkpoint, sweep_temp_files
from .durable import fsync_dir, make_dirs
from .file_cache import Cache, Entry
from .file_health import parked, progress
from .file_parked import reapply_parked
from .file_parking import ParkRecord, legacy_in_the_way, read_parks
from .file_tail import Tail
from .file_writes import SAVE_IDLE_S, WRITERS, Batch, Writes
from .fold import apply
from .gcpause import paused
from .snapshots import load_snapshot, snapshot_path

__all__ = ["FileProjector", "parked", "progress", "reapply_parked"]

log = logging.getLogger("tradelog.projector.file")

# Snapshot bytes of the Folds kept in memory (their objects take ~3x that, and a big
# document's encoded parts about as much again, see fragments.py): 128 MiB keeps
# a few thousand busy accounts hot and the projector's RSS bounded however long the log.
CACHE_BYTES = 128 << 20
# Snapshot bytes of the accounts one step may touch (checked after each read chunk; a
# new account counts 1 KiB, STEP_BYTES bounding what its events hold). A step's Folds
# stay pinned beside the next step's until that is folded: 50,000-event steps held
# every busy account twice (bench memory's steady logs, 100k vs 1M events: 121 vs 148
# MiB; with the bound 120 vs 131).
STEP_DIRTY_BYTES = 2 << 20


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
        check_partitions(settings)
        self._lock_fd = lock_projection(settings)
        try:
            cp = read_checkpoint(settings)
            if any(p >= settings.partitions for p in cp.positions):
                raise PartitionMismatch(
                    f"the checkpoint has partitions beyond {settings.partitions}"
                )
            positions = {p: cp.positions.get(p, 0) for p in range(settings.partitions)}
            self.tail = Tail(settings, positions)
            self.parks = read_parks(settings)
            sweep_temp_files(settings)
            make_dirs(settings.snapshot_dir, sync=settings.fsync != "off")
            if settings.fsync != "off":
                # What a previous run exchanged is durable from here on: its spares may
                # be overwritten (see atomic.py).
                fsync_dir(settings.snapshot_dir)
            self.bell = Bell(settings.run_dir, APPENDED)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._cache = Cache(cache_bytes)
        self.writes = Writes(
            settings, self._cache, self.parks, positions, writers, log_sync=self.tail.sync
        )
        self.applied = self.skipped = self.parked_events = 0
        # The partitions the rings that ended the idle wait named (None: all). The next
        # step reads only those: the one with a client's event is not read after every
        # other partition's end has been looked for. The step after reads them all.
        self._rung: set[int] | None = None
        self._legacy: set[str] = set()  # accounts whose snapshot path holds a legacy file

    @property
    def positions(self) -> dict[int, int]:
        """Per partition, the next offset to apply once the batch in flight is in place."""
        return self.writes.positions

    def _entry(self, account: str) -> Entry:
        entry = self._cache.get(account)
        if entry is None:
            fold, size = load_snapshot(self.settings, account)
            if fold is None and size:
                self._legacy.add(account)  # a legacy file in its place: see _one
            entry = self._cache.add(account, fold, size or 1024)
        return entry

    def _park(self, event: StoredEvent, held: int, error: str) -> None:
        record = ParkRecord(event.account, event.version, held, error, now_ms(), [event])
        self.parks[event.account] = record

    def _one(self, event: StoredEvent, batch: Batch) -> None:
        account = event.account
        record = self.parks.get(account)
        if record is not None:
            if event.version <= record.last_version:
                self.skipped += 1  # redelivered after a crash: already waiting
            else:
                record.wait(event)
                batch.parks.add(account)
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
            if state is None and account in self._legacy and event.type != LEGACY_IMPORTED:
                # Written over, the legacy document would be lost: the log never had it.
                path = os.fspath(snapshot_path(self.settings, account))
                raise LegacyNotImported(account, path)
            new = apply(state, event)
            self._legacy.discard(account)
        except SnapshotUnavailable:
            raise  # the disk, not the account: stop, a restart retries
        except LegacyNotImported as e:
            why = legacy_in_the_way(e.path, account)
            log.error("PARKED %s: %s; its later events wait", account, why)
            self._park(event, held, why)
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
            if account not in batch.folds:
                batch.dirty_bytes += entry.size
            batch.folds[account] = new
            self.applied += 1
            return
        batch.parks.add(account)
        self.parked_events += 1

    def step(self, max_events: int) -> int:
        """Fold the available events while the previous batch's snapshots are written.

        The fold is Python (one core), the writes are mostly kernel work (the other):
        batch N+1 is folded while batch N's files go to disk, then N is finished
        (its files in place, progress rung) and N+1's writes start. A step that
        finds nothing finishes the batch in flight: burst mode and the daemon's
        idle wait never leave one behind.
        """
        with paused(self.freeze_gc):
            batch = None
            taken = 0
            for chunk in self._take(max(1, max_events)):
                if batch is None:
                    batch = self.writes.batch()
                batch.read.add(chunk[0].partition)  # a chunk is one partition's
                for event in chunk:
                    self._one(event, batch)
                    batch.positions[event.partition] = event.offset + 1
                taken += len(chunk)
                if batch.dirty_bytes >= STEP_DIRTY_BYTES:
                    break  # the rest is read again by the next step
            self.writes.finish()
            if batch is None:
                return 0
            self.writes.start(batch)
            self.writes.save_if_due()
            return taken

    def _take(self, limit: int) -> Iterator[list[StoredEvent]]:
        """The tail's chunks: of the rung partitions first, if a ring named them; of every
        partition if those had none (their lines were read already; a ring was lost)."""
        rung, self._rung = self._rung, None
        found = False
        for chunk in self.tail.take(limit, rung):
            found = True
            yield chunk
        if rung is not None and not found:
            yield from self.tail.take(limit)

    def idle(self, timeout: float) -> None:
        if not self.writes.saved:  # checkpoint, unless more work comes at once
            if rung := self.bell.wait(min(timeout, SAVE_IDLE_S)):
                self._rung = rung_partitions(rung)
                return
            self.writes.save()
        rung = self.bell.wait(timeout)
        self._rung = rung_partitions(rung) if rung else None

    def heartbeat(self) -> None:
        self.writes.checkpoint()

    def summary(self) -> str:
        """Counts for the command's exit line."""
        return (
            f"applied {self.applied}, skipped {self.skipped} already applied, "
            f"parked {self.parked_events}; {len(self.parks)} accounts parked"
        )

    def close(self) -> None:
        try:
            self.writes.close()
        finally:
            self._release()

    def _release(self) -> None:
        self.bell.close()
        self.tail.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
