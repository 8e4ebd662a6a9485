"""The writer: appends commands to the log, committed a round at a time (commit_loop.py).

The API and the import tool use one Writer per process; it is thread-safe and
answers concurrent Futures or, from a coroutine, asyncio Futures.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import redis

from ._exceptions import LogUnavailable
from .answers import Job
from .commands import AppendResult, Command, make_command, peek_command
from .commit_loop import STOP, CommitLoop
from .keys import Keys
from .marker import check_partitions
from .notify import APPENDED, Ringer
from .records import partition_of
from .redisconn import connect
from .settings import Settings
from .streamlog import StreamLog

__all__ = ["Writer"]


class Writer:
    """Appends commands to the log; thread-safe; one per process is enough."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        check_partitions(settings.log_dir, settings.partitions)
        client = client if client is not None else connect(settings)
        self.stream = StreamLog(client, Keys(settings.key_prefix)) if client is not None else None
        self.redis_retry_at = 0.0
        self.redis_failures = 0
        self.redis_failing = False  # the last stream write failed (none since took)
        # Partitions whose last append found a damaged line, and what it said: appends
        # there fail until the line is mended (CorruptLog names file and line).
        self.damaged: dict[int, str] = {}
        self.ringer = Ringer(settings.run_dir, APPENDED)
        self._lock = threading.Lock()
        self._closed = False  # submits refused
        self._closing = False  # close() called
        self._loop = CommitLoop(self)
        self._parts = self._loop.parts  # owned by the loop's thread

    def _put(self, job: Job) -> None:
        # Under the lock: once close() has queued STOP, nothing is queued after it.
        with self._lock:
            if self._closed:
                raise LogUnavailable("the writer is closed")
            self._loop.q.put(job)

    def refuse(self) -> None:
        """Take no more commands (the writer is closing, or its commit loop failed)."""
        with self._lock:
            self._closed = True

    def submit(self, cmd: Command) -> Future[AppendResult]:
        """Queue a command; its Future is answered from the writer's commit thread, which
        runs the Future's callbacks too: keep them short, never wait on the writer there."""
        fut: Future[AppendResult] = Future()
        self._put((cmd, fut, None))
        return fut

    def submit_async(self, cmd: Command) -> asyncio.Future[AppendResult]:
        """Queue a command from a coroutine; the answer is set on the running loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[AppendResult] = loop.create_future()
        self._put((cmd, fut, loop))
        return fut

    def seen(self, account: str) -> int | None:
        """The account's version as far as this writer has read the log, from any thread
        and without waiting (it may count a batch still being written): 0 if it has read
        no event of the account. None if it has not read its partition (read at the
        first append or peek there), or must read it again (a batch there failed);
        other processes' appends are read at its next batch in the partition."""
        part = self._parts.get(partition_of(account, self.settings.partitions))
        if part is None or not part.ready or part.dead or not part.current:
            return None
        acct = part.state.accounts.get(account)  # (one dict lookup: safe beside the loop)
        return 0 if acct is None else acct.version

    async def peek_async(self, account: str) -> int:
        """The account's version in the log: its partition read to the end under the
        lock, in the next round (0 if the log holds no event of it)."""
        result = await self.submit_async(peek_command(account, self.settings.partitions))
        return result.version

    def command(
        self,
        account: str,
        type: str,
        data: Any,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        **meta: Any,
    ) -> Command:
        return make_command(
            account, type, data, self.settings.partitions, expected_version,
            idempotency_key, **meta,
        )  # fmt: skip

    def append(
        self,
        account: str,
        type: str,
        data: Any,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        **meta: Any,
    ) -> AppendResult:
        """Append one event and wait for it to be durable; raise on conflict or bad input."""
        cmd = self.command(account, type, data, expected_version, idempotency_key, **meta)
        return self.submit(cmd).result()

    async def append_async(
        self,
        account: str,
        type: str,
        data: Any,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        **meta: Any,
    ) -> AppendResult:
        cmd = self.command(account, type, data, expected_version, idempotency_key, **meta)
        return await self.submit_async(cmd)

    def close(self) -> None:
        """Commit what was queued, then stop; a second call waits for the first."""
        with self._lock:
            self._closed = True
            first, self._closing = not self._closing, True
            if first:
                self._loop.q.put(STOP)
        self._loop.thread.join()
        if first:
            self.ringer.close()
            if self.stream is not None:
                self.stream.client.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
