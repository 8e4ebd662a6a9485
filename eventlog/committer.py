"""A partition's committer: the file half of the dual write, on the partition's command side.

A committer holds what the writer knows of one partition: its file, its command
side, its stream copy. It is first read ahead without the lock (`warm`, on a
warm-up thread). The commit loop (commit_loop.py) then drives it a round at a
time: `stage`, under the partition lock, reads what other processes appended,
decides each command (decisions.py) and writes the batch with one write; the
loop syncs, adds the batch to the stream, and `finish` answers, releasing the
lock unless the loop's next round has staged on it meanwhile. What it knows of
the partition is saved now and then (state_saves.py), so that a restart reads
only what came after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import CorruptLog, LogUnavailable
from .answers import Job
from .decisions import answer, decide_all
from .filelog import PartitionFile
from .noop_receipts import NoopReceipts
from .records import StoredEvent
from .state import PartitionState
from .state_file import holds
from .state_saves import Saves
from .stream_copy import StreamCopy

if TYPE_CHECKING:
    from .writer import Writer

__all__ = ["Committer", "Staged"]

log = logging.getLogger("tradelog.writer")

BATCH_FSYNC_S = 0.010  # fsync=batch: how long a written batch may wait for its fsync


@dataclass(slots=True)
class Staged:
    """A batch written to the file under the partition lock, not yet answered."""

    batch: list[Job]
    outcomes: list[tuple[Job, Any]]  # (job, (findings, placed)) or (job, exception)
    caught: list[StoredEvent]  # what other processes had appended before it
    events: list[StoredEvent]  # what it appended
    entries: list[list[bytes | str]]  # the events' stream values


class Committer:
    """One partition of a writer: its file, command-side state and stream copy."""

    def __init__(self, writer: Writer, partition: int) -> None:
        self.w = writer
        self.p = partition
        self.file = PartitionFile(writer.settings.log_dir, partition, writer.settings.segment_bytes)
        self.state = PartitionState()
        self.stream = StreamCopy(writer, partition, self.file.dir)
        self.noops = NoopReceipts(self.file.dir)  # keyed writes that appended nothing
        self.saves = Saves()  # read from it at the first batch, in the loop's thread
        self.dirty_since: float | None = None  # fsync=batch: written, not yet synced
        self.dead = False  # failed and could not be opened again
        self.warming = False  # its command side is being read (warm), off the loop's thread
        self.ready = False  # read: the loop may stage on it
        # Its state holds the log as of its last read (warm, or a stage's catch-up); not
        # after a failure, whose state is the last save's until the next stage: `seen`
        # must not answer from it (a GET would take an older version for the log's).
        self.current = False
        self.held = 0  # rounds staged in a row on the lock taken (0: not held)
        self._ahead: tuple[int, str] | None = None  # events read ahead, and the last one's id
        # Lines read here that no sync of this process covered yet. Another process that
        # died between its write and its sync left its lines in the page cache only, and a
        # batch answered from them (a retry's receipt) acknowledges them: such a batch is
        # synced too, though it writes nothing. Until the first sync, whatever was read.
        self.unsynced = True

    def warm(self) -> None:
        """Read the saved command side and what the log holds after it, without the lock,
        on the loop's warm-up thread while the other partitions commit (a big partition's
        first read takes seconds). What comes after, and a torn tail, the next stage
        reads under the lock."""
        try:
            self._load()
            self.noops.read(self.state)
            read = self.file.read_ahead()
            for event in read:
                self.state.observe(event)
            if read:
                self._ahead = (len(read), read[-1].id)
            self.current = True
        except CorruptLog as e:  # no traceback: the message names the file and line
            log.error("cannot read partition %d ahead: %s", self.p, e)
            self.fail()
        except Exception:
            log.exception("cannot read partition %d ahead: its next batch reads it", self.p)
            self.fail()  # from the saved command side again, under the lock this time
        finally:
            self.ready = True

    def stage(self, batch: list[Job]) -> Staged:
        """Decide and write `batch` under the partition lock, which stays held (the
        lock taken, the partition read by `warm`). On failure the lock is released and
        the error raised: nothing of the batch is acknowledged."""
        try:
            if self._ahead is not None:
                self._check_ahead(*self._ahead)
            caught = self.file.catch_up()
            if caught:
                self.unsynced = True
            for event in caught:
                self.state.observe(event)
            self.noops.read(self.state)
            outcomes: list[tuple[Job, Any]] = []
            events = decide_all(self.state, self.p, self.file.next_offset, batch, outcomes)
            if self.state.fresh_noops:
                fresh, self.state.fresh_noops = self.state.fresh_noops, []
                self.noops.append(self.state, fresh)
            self.current = True
            entries: list[list[bytes | str]] = []
            if events:
                encoded = [e.encode() for e in events]
                self.file.write(b"".join([line for line, _ in encoded]), len(events))
                entries = [values for _, values in encoded]
        except BaseException:
            self.fail()
            raise
        return Staged(batch, outcomes, caught, events, entries)

    def _check_ahead(self, count: int, last_id: str) -> None:
        """Under the lock, check that what `warm` read is still the log: another writer's
        failed write is cut off again, and its complete lines may have been read meanwhile."""
        self._ahead = None
        if holds(self.file.dir, self.file.position(), last_id):
            self.saves.read_ahead(count, last_id)
            return
        log.warning("partition %d: lines read ahead were cut off since: reading anew", self.p)
        self.current = False
        self.file.reset()
        self._load()

    def needs_sync(self, staged: Staged) -> bool:
        """Whether the staged batch waits for a sync: it wrote, or it is answered from
        lines no sync of ours covered yet."""
        if staged.events:
            return True
        return (self.unsynced or self.noops.unsynced) and self.w.settings.fsync != "off"

    def sync(self, now: float) -> None:
        """Make the staged batch as durable as the fsync policy says acks are."""
        policy = self.w.settings.fsync
        if policy == "always":
            self._sync()
        elif policy == "batch":
            if self.dirty_since is None:
                self.dirty_since = now
            elif now - self.dirty_since >= BATCH_FSYNC_S:
                self.sync_dirty()

    def sync_dirty(self) -> None:
        if self.dirty_since is not None:
            try:
                self._sync()
            except LogUnavailable:
                log.exception("batch fsync failed")
            self.dirty_since = None

    def _sync(self) -> None:
        """Sync the segment and the no-op receipts: every line read or written here."""
        self.file.sync()
        self.noops.sync()
        self.unsynced = False

    def _load(self) -> None:
        """The command side from its last save (`file` moved to where it ends), and the
        no-op receipts read again into it at the next read."""
        self.state = self.saves.load(self.file)
        self.noops.reset()

    def due(self) -> float | None:
        """When a batch written under fsync=batch must be synced (None: none waits)."""
        return None if self.dirty_since is None else self.dirty_since + BATCH_FSYNC_S

    def fail(self, cut: bool = False) -> None:
        """Give up a staged batch: let the lock go and forget decisions never made durable.
        `cut`: its lines were written but not synced (the sync failed): they are cut off
        first, under the lock, for its callers are answered with the error. Never raises:
        a partition that cannot be opened again is `dead`, for the loop to replace by a
        new committer."""
        if cut:
            try:
                self.file.cut_last_write()
            except LogUnavailable:
                log.exception("partition %d: a batch answered as failed stays in the log", self.p)
        self.file.close()  # lets the lock go
        self.held = 0
        self.current = False
        try:
            self.file = PartitionFile(
                self.w.settings.log_dir, self.p, self.w.settings.segment_bytes
            )
        except Exception:
            log.exception("cannot open partition %d again", self.p)
            self.dead = True
            return
        # State may hold decisions of a batch that never reached the disk: rebuild from it.
        self._load()
        self.unsynced = True

    def finish(self, staged: Staged, redis_ok: bool, unlock: bool = True) -> list[tuple[Job, Any]]:
        """Release the lock, unless a later batch staged meanwhile holds it; the answers
        of the staged batch."""
        if unlock:
            self.file.unlock()
            self.held = 0
        answers: list[tuple[Job, Any]] = []
        top = self.stream.top
        for job, outcome in staged.outcomes:
            if isinstance(outcome, BaseException):
                answers.append((job, outcome))
            else:
                findings, placed = outcome
                result = answer(self.p, job[0], findings, placed, redis_ok, top)
                answers.append((job, result))
        return answers

    def noted(self, staged: Staged) -> None:
        """Count the batch toward the next save of the command side (once it is synced,
        before a later batch is staged: a save holds every event before the file's
        position). It may save: every SAVE_EVERY events, or after a long read."""
        self.saves.note(staged.caught, staged.events, self.file, self.state)

    def close(self) -> None:
        self.sync_dirty()
        self.saves.save(self.file, self.state)
        self.file.close()
        self.noops.close()
