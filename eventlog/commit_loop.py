"""The writer's commit loop: group commit across every partition, on one thread.

Callers queue commands; the loop takes every command waiting and commits them
in a round: each partition concerned is locked, caught up, decided and written
(committer.py), then every written file is synced, the listeners are rung once,
the batches go to their streams in one Redis round trip, and the answers go
out together. One thread for all partitions, not one each: the threads of a
process share one interpreter lock, and a thread per partition spent more of
the writer's time handing it over than appending.

A partition whose lock another process holds is left to the next round rather
than waited for while others are held; the loop blocks on a lock only when it
holds none, so processes taking several partitions' locks never deadlock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._exceptions import LogUnavailable
from .answers import Job, settle
from .committer import Committer, Staged
from .stream_copy import add_all

if TYPE_CHECKING:
    from .writer import Writer

__all__ = ["STOP", "CommitLoop"]

log = logging.getLogger("tradelog.writer")

_MAX_ROUND = 8192  # commands taken into one round
_SYNC_THREADS = 8
_MAX_PASSES = 4  # rounds a partition whose lock is busy may be left to the next
STOP = object()  # queued to stop the loop


class CommitLoop:
    """The thread that commits a writer's queued commands, a round at a time."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.parts: dict[int, Committer] = {}
        self._waiting: dict[int, list[Job]] = {}  # jobs of partitions left to the next round
        self._passes: dict[int, int] = {}  # rounds each of those has been passed over
        self._pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="tradelog-fsync")
        self.thread = threading.Thread(target=self._run, name="tradelog-commit", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs: list[Job] = []
            if not self._waiting:
                try:
                    item = self.q.get(timeout=self._timeout())
                except queue.Empty:
                    self._sync_due()
                    continue
                if item is STOP:
                    stop = True
                else:
                    jobs.append(item)
            while not stop and len(jobs) < _MAX_ROUND:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    stop = True
                else:
                    jobs.append(item)
            self._round(jobs)
            while stop and self._waiting:
                self._round([])
        self._close()

    def _timeout(self) -> float | None:
        due = [d for part in self.parts.values() if (d := part.due()) is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _sync_due(self) -> None:
        now = time.monotonic()
        for part in self.parts.values():
            due = part.due()
            if due is not None and due <= now:
                part.sync_dirty()

    def _round(self, jobs: list[Job]) -> None:
        groups = self._waiting
        self._waiting = {}
        for job in jobs:
            groups.setdefault(job[0].partition, []).append(job)
        staged: list[tuple[Committer, Staged]] = []
        try:
            answers: list[tuple[Job, Any]] = []
            self._stage_all(groups, staged, answers)
            staged[:] = self._sync(staged, answers)
            if staged:
                self.w.ringer.ring()
                written = [(part, s) for part, s in staged if s.events]
                batches = [(part.stream, s.events[0].offset, s.entries) for part, s in written]
                took = add_all(self.w, batches)
                in_stream = {part.p for (part, _), ok in zip(written, took, strict=True) if ok}
                for part, s in staged:
                    answers.extend(part.finish(s, part.p in in_stream))
            settle(answers)
        except Exception as e:  # a bug: no caller may wait forever, no lock stay held
            log.exception("a commit round failed")
            for part, _ in staged:
                part.fail()
            ours = [p for p in groups if p not in self._waiting]
            settle([(job, e) for p in ours for job in groups[p]])
            return
        for part, s in staged:
            part.noted(s)

    def _stage_all(
        self,
        groups: dict[int, list[Job]],
        staged: list[tuple[Committer, Staged]],
        answers: list[tuple[Job, Any]],
    ) -> None:
        """Lock and stage each partition's batch; leave those another process holds to
        the next round. A lock is waited for only while none is held (no deadlock
        between processes): one passed over `_MAX_PASSES` rounds, else the first
        passed over if no other could be taken."""
        passed: list[int] = []
        overdue = [p for p in sorted(groups) if self._passes.get(p, 0) >= _MAX_PASSES]
        for p in overdue + [p for p in sorted(groups) if p not in overdue]:
            if not self._stage(p, groups[p], not staged and p in overdue, staged, answers):
                passed.append(p)
        if passed and not staged:  # none taken: wait for the first (none is held)
            first = passed.pop(0)
            self._stage(first, groups[first], True, staged, answers)
        for p in groups:
            if p in passed:
                self._waiting[p] = groups[p]
                self._passes[p] = self._passes.get(p, 0) + 1
            else:
                self._passes.pop(p, None)

    def _stage(
        self,
        p: int,
        batch: list[Job],
        wait: bool,
        staged: list[tuple[Committer, Staged]],
        answers: list[tuple[Job, Any]],
    ) -> bool:
        """Stage one partition's batch; False if its lock is held elsewhere (and not
        waited for). A batch that fails is answered with the error."""
        try:
            part = self._part(p)
            if not part.file.lock(wait):
                return False
            staged.append((part, part.stage(batch)))
        except Exception as e:  # the batch failed as a whole: nothing of it is acknowledged
            answers.extend((job, e) for job in batch)
        return True

    def _sync(
        self, staged: list[tuple[Committer, Staged]], answers: list[tuple[Job, Any]]
    ) -> list[tuple[Committer, Staged]]:
        """Sync each written batch; those whose sync failed are answered with the error."""
        now = time.monotonic()
        written = [(part, s) for part, s in staged if s.events]

        def sync(item: tuple[Committer, Staged]) -> BaseException | None:
            try:
                item[0].sync(now)
            except Exception as e:
                return e
            return None

        # fsync=always: the files are synced in parallel, which the filesystem's journal
        # commits together (8 partitions: ~1 ms, against ~2.2 ms one after another).
        if len(written) > 1 and self.w.settings.fsync == "always":
            errors = list(self._pool.map(sync, written))
        else:
            errors = [sync(item) for item in written]
        failed = set()
        for (part, s), e in zip(written, errors, strict=True):
            if e is not None:
                part.fail()
                answers.extend((job, e) for job in s.batch)
                failed.add(part.p)
        return [(part, s) for part, s in staged if part.p not in failed]

    def _part(self, p: int) -> Committer:
        part = self.parts.get(p)
        if part is None:
            part = self.parts[p] = Committer(self.w, p)
        return part

    def _close(self) -> None:
        self._pool.shutdown()
        for part in self.parts.values():
            try:
                part.close()
            except Exception:
                log.exception("cannot close partition %d", part.p)
        # Queued after the stop (a race with close): never committed, so say so.
        late: list[tuple[Job, Any]] = []
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                break
            if item is not STOP:
                late.append((item, LogUnavailable("the writer is closed")))
        settle(late)
