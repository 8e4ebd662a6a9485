"""A round's fsyncs: every written partition made durable before its batch is answered
(and one whose batch is answered from lines no sync of this process covered yet).

With fsync=always they run in parallel, which the filesystem's journal commits
together (8 partitions: ~1 ms, against ~2.2 ms one after another), and on the
pool's threads while the commit loop answers the round before.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .answers import Job
from .committer import Committer, Staged

__all__ = ["SyncPool", "Syncing"]

_SYNC_THREADS = 8


def _sync(item: tuple[Committer, Staged], now: float) -> BaseException | None:
    try:
        item[0].sync(now)
    except Exception as e:
        return e
    return None


@dataclass(slots=True)
class Syncing:
    """A round's syncs: each written batch's begun on the pool, or None: left to
    `SyncPool.finish`, on the caller's thread."""

    staged: list[tuple[Committer, Staged]]
    written: list[tuple[Committer, Staged]]
    futures: list[Future[BaseException | None] | None]
    now: float


class SyncPool:
    """Syncs a round's written batches, in parallel with fsync=always."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="tradelog-fsync")

    def start(self, staged: list[tuple[Committer, Staged]], overlap: bool) -> Syncing:
        """Begin syncing the staged batches: on the pool with fsync=always when there are
        several, or when the caller has other work meanwhile (`overlap`)."""
        now = time.monotonic()
        written = [(part, s) for part, s in staged if part.needs_sync(s)]
        futures: list[Future[BaseException | None] | None] = [None] * len(written)
        if written and written[0][0].w.settings.fsync == "always" and (overlap or len(written) > 1):
            try:
                for i, item in enumerate(written):
                    futures[i] = self._pool.submit(_sync, item, now)
            except RuntimeError:  # no new threads (the interpreter is exiting): the rest here
                pass
        return Syncing(staged, written, futures, now)

    def finish(
        self, syncing: Syncing, answers: list[tuple[Job, Any]]
    ) -> list[tuple[Committer, Staged]]:
        """The staged batches made durable; those whose sync failed are answered with
        the error (and their committers failed)."""
        errors = [
            _sync(item, syncing.now) if f is None else f.result()
            for item, f in zip(syncing.written, syncing.futures, strict=True)
        ]
        failed = set()
        for (part, s), e in zip(syncing.written, errors, strict=True):
            if e is not None:
                part.fail(cut=bool(s.events))  # (a batch that wrote nothing cuts nothing)
                answers.extend((job, e) for job in s.batch)
                failed.add(part.p)
        return [(part, s) for part, s in syncing.staged if part.p not in failed]

    def settled(self, syncing: Syncing) -> None:
        """Wait for a round's syncs begun on the pool, whatever they found."""
        for f in syncing.futures:
            if f is not None:
                f.result()

    def close(self) -> None:
        self._pool.shutdown()
