"""A partition's committer: group commit, the version checks, and the dual write.

Each partition has one committer thread per process. Callers queue commands;
the committer takes every command waiting, and under one hold of the
partition lock reads what other processes appended, decides each command
(version check, idempotent retry, what it finds), writes the batch with one
write and one fsync, and adds it to the partition's stream (stream_copy.py).
The stream write is bounded: in phases 1-2 Redis being down or slow never
fails an append, the result says `redis_written: false` and the relay fills
the stream in later. What it knows of the partition is saved now and then
(state_saves.py), so that a restart reads only what came after.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import uuid_utils

from ._exceptions import LogUnavailable, VersionConflict
from .answers import Job, settle
from .commands import AppendResult, Command
from .filelog import PartitionFile
from .records import FRIENDS_REMOVED, LEGACY_IMPORTED, StoredEvent, utc_ts
from .state import Findings, PartitionState
from .state_saves import Saves
from .stream_copy import StreamCopy

if TYPE_CHECKING:
    from .writer import Writer

__all__ = ["STOP", "Committer"]

log = logging.getLogger("tradelog.writer")

_MAX_BATCH = 2048
_BATCH_FSYNC_S = 0.010
STOP = object()  # queued to stop a committer


class Committer:
    """One partition's committer: its queue, file, command-side state and thread."""

    def __init__(self, writer: Writer, partition: int) -> None:
        self.w = writer
        self.p = partition
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.file = PartitionFile(writer.settings.log_dir, partition, writer.settings.segment_bytes)
        self.state = PartitionState()
        self.stream = StreamCopy(writer, partition, self.file.dir)
        self.saves = Saves()  # read from it at the first batch, in this thread
        self.dirty_since: float | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"tradelog-commit-p{partition:02d}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        while True:
            timeout = None
            if self.dirty_since is not None:
                timeout = max(0.0, self.dirty_since + _BATCH_FSYNC_S - time.monotonic())
            try:
                item = self.q.get(timeout=timeout)
            except queue.Empty:
                self._sync_dirty()
                continue
            batch: list[Job] = []
            stop = item is STOP
            if not stop:
                batch.append(item)
            while len(batch) < _MAX_BATCH:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    stop = True
                    break
                batch.append(item)
            if batch:
                self._commit(batch)
            if stop:
                self._sync_dirty()
                self.saves.save(self.file, self.state)
                self.file.close()
                return

    def _sync_dirty(self) -> None:
        if self.dirty_since is not None:
            try:
                self.file.sync()
            except LogUnavailable:
                log.exception("batch fsync failed")
            self.dirty_since = None

    def _commit(self, batch: list[Job]) -> None:
        outcomes: list[tuple[Job, Any]] = []
        if not self.saves.loaded:
            self.state = self.saves.load(self.file)
        try:
            with self.file.locked():
                caught = self.file.catch_up()
                for event in caught:
                    self.state.observe(event)
                events = self._decide_all(batch, outcomes)
                redis_ok = self._write(events) if events else False
        except Exception as e:  # the batch failed as a whole: nothing of it is acknowledged
            self._reset()
            settle([(job, e) for job in batch])
            return
        answers: list[tuple[Job, Any]] = []
        for job, outcome in outcomes:
            if isinstance(outcome, BaseException):
                answers.append((job, outcome))
            else:
                findings, placed = outcome
                answers.append((job, self._result(job[0], findings, placed, redis_ok)))
        settle(answers)
        self.saves.note(caught, events, self.file, self.state)  # after the answers: it may save

    def _decide_all(self, batch: list[Job], outcomes: list[tuple[Job, Any]]) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        next_offset = self.file.next_offset
        ts = utc_ts()  # one clock read per batch: every event of it is appended at once
        for job in batch:
            try:
                event, findings, duplicate = self._decide(job[0], next_offset, ts)
            except VersionConflict as e:
                outcomes.append((job, e))
                continue
            if event is not None and not duplicate:
                events.append(event)
                next_offset += 1
            outcomes.append((job, (findings, (event, duplicate))))
        return events

    def _decide(
        self, cmd: Command, offset: int, ts: str
    ) -> tuple[StoredEvent | None, Findings, bool]:
        acct = self.state.account(cmd.account)
        if cmd.idempotency_key:
            receipt = self.state.receipts.get((cmd.account, cmd.idempotency_key))
            if receipt is not None:
                return receipt.event(cmd.account, self.p), receipt.findings, True
        if cmd.expected_version is not None and cmd.expected_version != acct.version:
            raise VersionConflict(cmd.account, cmd.expected_version, acct.version)
        data = cmd.data
        if cmd.type == FRIENDS_REMOVED:
            present = [f for f in data["friend_steam_ids"] if f in acct.friends]
            if not present:
                return None, Findings("removed"), False
            data = {"friend_steam_ids": present}
        elif cmd.type == LEGACY_IMPORTED and acct.import_sha == data["source"]["sha256"]:
            return None, Findings("unchanged"), False
        event = StoredEvent(
            id=str(uuid_utils.uuid7()),
            account=cmd.account,
            version=acct.version + 1,
            partition=self.p,
            offset=offset,
            type=cmd.type,
            ts=ts,
            data=data,
            meta=cmd.meta,
        )
        return event, self.state.observe(event), False

    def _write(self, events: list[StoredEvent]) -> bool:
        encoded = [e.encode() for e in events]
        self.file.write(b"".join([line for line, _ in encoded]), len(events))
        policy = self.w.settings.fsync
        if policy == "always":
            self.file.sync()
        elif policy == "batch":
            now = time.monotonic()
            if self.dirty_since is None:
                self.dirty_since = now
            elif now - self.dirty_since >= _BATCH_FSYNC_S:
                self._sync_dirty()
        # The file projector reads only the file: it starts on the batch (durable as the
        # policy makes acks durable) while the stream is written.
        self.w.ringer.ring()
        return self.stream.add(events[0].offset, [values for _, values in encoded])

    def _result(
        self, cmd: Command, findings: Findings, placed: tuple[StoredEvent | None, bool],
        redis_ok: bool,
    ) -> AppendResult:  # fmt: skip
        event, duplicate = placed
        acct = self.state.account(cmd.account)
        if event is None:
            return AppendResult(
                cmd.account, acct.version, self.p, None, None, None,
                appended=False, duplicate=False, redis_written=False, findings=findings,
            )  # fmt: skip
        return AppendResult(
            cmd.account, event.version, self.p, event.offset, event.id, event.ts,
            appended=not duplicate, duplicate=duplicate,
            redis_written=redis_ok if not duplicate else event.offset <= self.stream.top,
            findings=findings,
        )  # fmt: skip

    def _reset(self) -> None:
        # State may hold decisions of a batch that never reached the disk: rebuild from it.
        with contextlib.suppress(OSError):
            self.file.close()
        self.file = PartitionFile(self.w.settings.log_dir, self.p, self.w.settings.segment_bytes)
        self.state = self.saves.load(self.file)
