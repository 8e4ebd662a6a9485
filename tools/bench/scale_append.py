"""The appending process of `bench scale`: one Writer kept open over several rounds.

The process is spawned (it inherits no connection or thread), opens an
`eventlog.Writer` on the log and appends one event to each partition: its
start-up, timed, which includes each committer reading its whole partition.
Then, round after round, it appends the number of events it is sent: 8 asyncio
tasks sharing the Writer, as many appends in flight each as `bench append`, from
OfferStreams over accounts of the round's own, seeded the same in every such
process, and answers the wall time and counts. Kept open between rounds, so a
big log's start-up is paid once.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from eventlog import AppendResult, Writer
from eventlog.records import TRADE_OFFER_UPSERTED
from eventlog.settings import Settings
from projections.gcpause import tune_for_service

from .append_library import IN_FLIGHT as _IN_FLIGHT
from .append_library import WRITERS as _WRITERS
from .workload import OfferStream

__all__ = ["Appender"]

_ANSWER_S = 900.0  # a 1M-event log's start-up takes ~20 s here: generous
# Each round's 4,096 accounts (steam_ids steps by 7919), above the logs' own.
_FIRST_ACCOUNT, _ROUND_SPAN = 76561199300000000, 4096 * 7919


async def _task(writer: Writer, stream: OfferStream, count: int) -> tuple[int, int, list[str]]:
    """Append `count` events with a window in flight; (failed, not in Redis, errors)."""
    inflight: set[asyncio.Future[AppendResult]] = set()
    submitted = failed = unwritten = 0
    errors: list[str] = []
    while submitted < count or inflight:
        while submitted < count and len(inflight) < _IN_FLIGHT:
            account, data = stream.next()
            cmd = writer.command(account, TRADE_OFFER_UPSERTED, data, source="bench")
            inflight.add(writer.submit_async(cmd))
            submitted += 1
        done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        for fut in done:
            if (error := fut.exception()) is not None:
                failed += 1
                errors.append(repr(error))
            elif not fut.result().redis_written:
                unwritten += 1
    return failed, unwritten, errors[:3]


def _streams(round: int) -> list[OfferStream]:
    """A round's writers: accounts of its own (so every round starts from the same
    empty documents), the same for every log."""
    first = _FIRST_ACCOUNT + round * _ROUND_SPAN
    return [OfferStream(seed=i, first_account=first) for i in range(_WRITERS)]


async def _serve(settings: Settings, conn: Connection) -> None:
    opened = time.perf_counter()
    with Writer(settings) as writer:
        warm_up = _streams(-1)[0]
        for account in warm_up.account_per_partition(settings.partitions):
            data = warm_up.next()[1]
            await writer.append_async(account, TRADE_OFFER_UPSERTED, data, source="bench")
        conn.send({"startup": time.perf_counter() - opened, "appended": settings.partitions})
        # Blocking the loop is harmless while idle: nothing is in flight between rounds.
        while message := conn.recv():
            round, events = message
            streams = _streams(round)
            counts = [events // _WRITERS + (i < events % _WRITERS) for i in range(_WRITERS)]
            start = time.perf_counter()
            tasks = [_task(writer, s, n) for s, n in zip(streams, counts, strict=True)]
            done = await asyncio.gather(*tasks)
            wall = time.perf_counter() - start
            failed = sum(d[0] for d in done)
            conn.send(
                {
                    "wall": wall,
                    "acked": events - failed,
                    "failed": failed,
                    "not_written": sum(d[1] for d in done),
                    "errors": [e for d in done for e in d[2]][:3],
                }
            )


def _main(settings: Settings, conn: Connection) -> None:  # runs in the child process
    try:
        tune_for_service()  # as `tradelog serve` and the CLI run a Writer
        asyncio.run(_serve(settings, conn))
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


class Appender:
    """The appending process of one log; a context manager that always stops it."""

    def __init__(self, settings: Settings) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_main, args=(settings, child), daemon=True)
        self.started: dict[str, Any] = {}

    def __enter__(self) -> Appender:
        self.proc.start()
        try:
            self.started = self._answer()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _answer(self) -> dict[str, Any]:
        if not self.conn.poll(_ANSWER_S):
            raise RuntimeError(f"the appending process did not answer within {_ANSWER_S:g} s")
        answer: dict[str, Any] = self.conn.recv()
        if "error" in answer:
            raise RuntimeError(f"the appending process failed:\n{answer['error']}")
        return answer

    def append(self, round: int, events: int) -> dict[str, Any]:
        """Append `events` (timed in the process); its answer: wall, acked, failed, ..."""
        self.conn.send((round, events))
        return self._answer()

    def __exit__(self, *exc: object) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError):  # it is gone already
                self.conn.send(0)
            self.proc.join(timeout=30)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.conn.close()
