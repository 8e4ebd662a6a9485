"""The writer's commit loop: group commit across every partition, on one thread.

Callers queue commands; the loop takes every command waiting and commits them
in a round: each partition concerned is locked, caught up, decided and written
(committer.py), the listeners are rung once, every written file is synced, the
batches are sent to their streams in one Redis round trip, and the answers go
out together. The ring comes before the sync so that the file projector folds
and writes while the lines are synced (it installs nothing before it has made
the lines it read durable itself: FileProjector); the streams, acks and answers
all come after it.

Rounds overlap by one: a round's stream answers are read, and its callers
answered, only after the next round is staged and while its fsyncs run, so the
loop works while Redis runs the scripts and the disk syncs. A partition of both
rounds keeps its lock from the first's staging to the second's answers (the
second's lines follow the first's, and its stream add is sent only once the
first's is answered), so the stream still takes each partition's batches in
order and no other process appends between them.

One thread for all partitions, not one each: the threads of a process share
one interpreter lock, and a thread per partition spent more of the writer's
time handing it over than appending.

The loop never waits for a partition lock: one that another process holds is
tried again a little later (0.5 ms, doubling up to 2 ms) while the other
partitions' commands go on, so no process can hold up this one's other
partitions, and processes taking several locks never deadlock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._exceptions import CorruptLog, LogUnavailable
from .answers import Job, settle
from .committer import Committer, Staged
from .filelog import LOCK_RETRY_S
from .notify import partitions_payload
from .round_sync import Syncing, SyncPool
from .sent_round import SentRound, recover
from .stream_copy import RoundAdds

if TYPE_CHECKING:
    from .writer import Writer

__all__ = ["STOP", "CommitLoop"]

log = logging.getLogger("tradelog.writer")

_MAX_ROUND = 8192  # commands taken into one round
# Rounds staged on a partition's lock in a row: the third waits for the lock to be let
# go (as the second is answered) and taken again, so other processes get their turn.
_MAX_HELD = 2
_WARM_THREADS = 4  # partitions read ahead at once (their first read, off the loop's thread)
STOP = object()  # queued to stop the loop


class CommitLoop:
    """The thread that commits a writer's queued commands, a round at a time."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.parts: dict[int, Committer] = {}
        self._waiting: dict[int, list[Job]] = {}  # partitions whose lock was busy: next round
        self._retry = LOCK_RETRY_S[0]
        self._sent: SentRound | None = None  # answered once the next round is staged
        self._yielded = False  # a partition's lock was let go on purpose this round
        self._syncs = SyncPool()
        # Several: a small partition's read is not queued behind a big one's.
        self._warmer = ThreadPoolExecutor(_WARM_THREADS, thread_name_prefix="tradelog-warm")
        self.thread = threading.Thread(target=self._run, name="tradelog-commit", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            stop = False
            while not stop or self._waiting or self._sent is not None:
                jobs, stop = self._take(stop)
                if jobs or self._waiting or self._sent is not None:
                    progressed = self._round(jobs)
                    first, longest = LOCK_RETRY_S
                    self._retry = first if progressed else min(self._retry * 2, longest)
                self._sync_due()
        except BaseException:  # a bug: close the writer rather than leave callers waiting
            log.exception("the commit loop failed: the writer takes no more appends")
        finally:
            self._close()

    def _take(self, stop: bool) -> tuple[list[Job], bool]:
        """The commands queued, waiting for the first until a batch sync is due or, with
        partitions left waiting, their retry; not at all with a round to answer."""
        timeout = self._timeout()
        if self._waiting:
            timeout = self._retry if timeout is None else min(timeout, self._retry)
        jobs: list[Job] = []
        try:
            item = self.q.get(self._sent is None, timeout)
        except queue.Empty:
            return jobs, stop
        while True:
            if item is STOP:
                stop = True
            else:
                jobs.append(item)
            if len(jobs) >= _MAX_ROUND:
                return jobs, stop
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return jobs, stop

    def _timeout(self) -> float | None:
        due = [d for part in self.parts.values() if (d := part.due()) is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _sync_due(self) -> None:
        now = time.monotonic()
        for part in self.parts.values():
            due = part.due()
            if due is not None and due <= now:
                part.sync_dirty()

    def _round(self, jobs: list[Job]) -> bool:
        """Commit a round and answer the one before; whether any partition of this round
        could be locked, or was let go on purpose."""
        groups = self._waiting
        self._waiting = {}
        for job in jobs:
            groups.setdefault(job[0].partition, []).append(job)
        before = self._sent  # kept there until answered: _close answers it if the loop dies
        self._yielded = False
        staged: list[tuple[Committer, Staged]] = []
        answers: list[tuple[Job, Any]] = []
        syncing: Syncing | None = None
        current: SentRound | None = None
        try:
            for p in sorted(groups):
                if not self._stage(p, groups[p], staged, answers):
                    self._waiting[p] = groups[p]  # its lock is busy: the next round
            written_to = [part.p for part, s in staged if s.events]
            if written_to:
                self.w.ringer.ring(partitions_payload(written_to))
            syncing = self._syncs.start(staged, overlap=before is not None)
            if before is not None:
                before.answer(holding={id(part) for part, _ in staged})
                before = self._sent = None
            staged[:] = self._syncs.finish(syncing, answers)
            written = [(part, s) for part, s in staged if s.events]
            batches = [(part.stream, s.events[0].offset, s.entries) for part, s in written]
            current = SentRound(staged, written, RoundAdds(self.w, batches), answers)
            for part, s in staged:
                part.noted(s)  # synced, and nothing staged after it yet
            if written:
                self._sent, current = current, None
            else:  # nothing for Redis to do: answer at once
                current.answer(holding=set())
        except Exception as e:  # a bug: no caller may wait forever, no lock stay held
            log.exception("a commit round failed")
            self._sent = None  # answered here
            if syncing is not None:
                self._syncs.settled(syncing)  # no file is closed under a running fsync
            ours = [job for p in groups if p not in self._waiting for job in groups[p]]
            recover(e, staged, before, current, ours)
            return True
        return self._yielded or len(self._waiting) < len(groups)

    def _stage(
        self,
        p: int,
        batch: list[Job],
        staged: list[tuple[Committer, Staged]],
        answers: list[tuple[Job, Any]],
    ) -> bool:
        """Stage one partition's batch; False if another process holds its lock. A batch
        that fails is answered with the error."""
        try:
            part = self.parts.get(p)
            if part is None or part.dead:
                part = self.parts[p] = Committer(self.w, p)
            if not part.ready:  # read on the warm-up thread first: the next rounds take it
                if not part.warming:
                    try:
                        self._warmer.submit(part.warm)
                    except RuntimeError:  # no new threads (the interpreter is exiting)
                        part.warm()
                    part.warming = True
                if not part.ready:
                    return False
            if part.held >= _MAX_HELD:  # let it go before the next round: others wait
                self._yielded = True
                return False
            if not part.file.lock(wait=False):
                return False
            staged.append((part, part.stage(batch)))
            part.held += 1
            self.w.damaged.pop(p, None)
        except Exception as e:  # the batch failed as a whole: nothing of it is acknowledged
            if isinstance(e, CorruptLog):  # (for /ready: it stays until an append gets by)
                self.w.damaged[p] = str(e)
            answers.extend((job, e) for job in batch)
        return True

    def _close(self) -> None:
        self.w.refuse()  # from here on, submits fail at once
        if self._sent is not None:  # the loop failed between two rounds
            sent, self._sent = self._sent, None
            try:
                sent.answer(holding=set())
            except Exception as e:
                log.exception("cannot answer the last round")
                settle([(job, e) for job in sent.jobs()])
        self._warmer.shutdown()  # a partition being read is read to the end first
        self._syncs.close()
        for part in self.parts.values():
            try:
                part.close()
            except Exception:
                log.exception("cannot close partition %d", part.p)
        # What is left (after a failure of the loop, or a race with close) was never
        # committed: say so.
        closed = LogUnavailable("the writer is closed")
        late: list[tuple[Job, Any]] = [(job, closed) for b in self._waiting.values() for job in b]
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                break
            if item is not STOP:
                late.append((item, closed))
        settle(late)
