"""A round's fsyncs: every written partition made durable before its batch is answered.

With fsync=always they run in parallel, which the filesystem's journal commits
together (8 partitions: ~1 ms, against ~2.2 ms one after another).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .answers import Job
from .committer import Committer, Staged

__all__ = ["SyncPool"]

_SYNC_THREADS = 8


class SyncPool:
    """Syncs a round's written batches, in parallel with fsync=always."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="tradelog-fsync")

    def sync(
        self, staged: list[tuple[Committer, Staged]], answers: list[tuple[Job, Any]]
    ) -> list[tuple[Committer, Staged]]:
        """The staged batches made durable; those whose sync failed are answered with
        the error (and their committers failed)."""
        now = time.monotonic()
        written = [(part, s) for part, s in staged if s.events]

        def sync(item: tuple[Committer, Staged]) -> BaseException | None:
            try:
                item[0].sync(now)
            except Exception as e:
                return e
            return None

        if len(written) > 1 and written[0][0].w.settings.fsync == "always":
            errors = list(self._pool.map(sync, written))
        else:
            errors = [sync(item) for item in written]
        failed = set()
        for (part, s), e in zip(written, errors, strict=True):
            if e is not None:
                part.fail(cut=True)
                answers.extend((job, e) for job in s.batch)
                failed.add(part.p)
        return [(part, s) for part, s in staged if part.p not in failed]

    def close(self) -> None:
        self._pool.shutdown()
