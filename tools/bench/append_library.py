"""The library side of `bench append`: the worker processes that drive an eventlog.Writer.

`library_tasks` is the default shape: one process, one Writer shared by
`writers` asyncio tasks, as the API and the import tool use the library.
`library_writer` is `--processes`: one process and Writer per writer, so the
partitions' flocks are contended across processes. Both keep `in_flight`
TradeOfferUpserted appends in flight for `seconds` and answer the same dict
(counts, start and end times, latencies as array bytes), which append.run sums.
"""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from eventlog import AppendResult, Writer
from eventlog.records import TRADE_OFFER_UPSERTED
from projections.gcpause import tune_for_service

from .workload import OfferStream

__all__ = ["IN_FLIGHT", "WRITERS", "library_tasks", "library_writer"]

# The writers and the appends each keeps in flight. 128: a round is answered only
# once the next is staged (eventlog/commit_loop.py), so a writer needs two rounds'
# worth in flight to keep the loop fed; with 64 the loop often found nothing to stage.
WRITERS, IN_FLIGHT = 8, 128


class _Tally:
    """One writer's answers: their latencies, failures and appends Redis did not take, and
    when the last came. `done` is every append's callback: on the loop for asyncio
    Futures, on the writer's commit thread for concurrent ones (only single appends and
    stores there, which the GIL makes atomic, so no lock is added to the measured path)."""

    def __init__(self, start: float, release: Callable[[], None]) -> None:
        self.start = start  # when the timed part began
        self.latencies = array("d")
        self.failed: list[BaseException] = []
        self.unwritten = 0
        self.last = start
        self._release = release  # frees the append's place in the window

    def done(self, t0: float, fut: Future[AppendResult] | asyncio.Future[AppendResult]) -> None:
        self.last = time.perf_counter()
        self.latencies.append(self.last - t0)
        error = fut.exception()
        if error is not None:
            self.failed.append(error)
        elif not fut.result().redis_written:
            self.unwritten += 1
        self._release()

    def result(self, submitted: int, warm_up: int) -> dict[str, Any]:
        """What a worker answers append.run."""
        return {
            "submitted": submitted,
            "warm_up": warm_up,
            "start": self.start,
            "end": self.last,
            "errors": [repr(e) for e in self.failed[:5]],
            "failed": len(self.failed),
            "not_written": self.unwritten,
            "latencies": self.latencies.tobytes(),
        }


_POOL = 8192  # appends' data built per task before the clock starts


def library_tasks(index: int, params: dict[str, Any], wait_for_go: Callable[[], None]) -> Any:
    """One process, one Writer, `writers` asyncio tasks each with a window in flight.

    Each task's data is built before the clock starts and cycled (after `_POOL`
    appends the same offers come again, as updates), as the raw XADD baseline's
    entries are: the clock times the library, not the making of random offers. A
    task refills its window in bursts, once half of it is answered, so that it
    wakes once per burst rather than once per append.
    """
    settings = params["settings"]
    window: int = params["in_flight"]
    count: int = params["writers"]
    tune_for_service()  # as `tradelog serve` and the CLI run a Writer

    async def main() -> list[dict[str, Any]]:
        streams = [OfferStream(seed=i) for i in range(count)]
        pools = [[s.next() for _ in range(_POOL)] for s in streams]
        with Writer(settings) as writer:
            for account in streams[0].account_per_partition(settings.partitions):
                data = streams[0].next()[1]
                await writer.append_async(account, TRADE_OFFER_UPSERTED, data, source="bench")
            wait_for_go()
            start = time.perf_counter()
            deadline = start + params["seconds"]
            loop = asyncio.get_running_loop()

            async def one(pool: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
                free = window
                wake: asyncio.Future[None] | None = None
                wanted = window // 2  # free places that end a wait

                def release() -> None:
                    nonlocal free
                    free += 1
                    if wake is not None and free >= wanted and not wake.done():
                        wake.set_result(None)

                tally = _Tally(start, release)
                submitted = 0
                while time.perf_counter() < deadline:
                    for _ in range(free):
                        account, data = pool[submitted % _POOL]
                        t0 = time.perf_counter()
                        cmd = writer.command(account, TRADE_OFFER_UPSERTED, data, source="bench")
                        writer.submit_async(cmd).add_done_callback(partial(tally.done, t0))
                        submitted += 1
                    free = 0
                    wake = loop.create_future()
                    await wake
                wanted = window  # let the window drain
                while free < window:
                    wake = loop.create_future()
                    await wake
                return tally.result(submitted, 0)

            results = await asyncio.gather(*(one(p) for p in pools))
        results[0]["warm_up"] = settings.partitions
        return list(results)

    return asyncio.run(main())


def library_writer(index: int, params: dict[str, Any], wait_for_go: Callable[[], None]) -> Any:
    """One writer process: a Writer, a window of appends in flight, for `seconds`."""
    settings = params["settings"]
    window: int = params["in_flight"]
    stream = OfferStream(seed=index)
    slots = threading.Semaphore(window)
    warm_up = stream.account_per_partition(settings.partitions)
    tune_for_service()  # as `tradelog serve` and the CLI run a Writer
    with Writer(settings) as writer:
        # Untimed: start every partition's committer and warm the imports and caches up.
        for account in warm_up:
            writer.append(account, TRADE_OFFER_UPSERTED, stream.next()[1], source="bench")
        wait_for_go()
        # perf_counter is CLOCK_MONOTONIC on Linux: comparable between the processes.
        start = time.perf_counter()
        deadline = start + params["seconds"]
        tally = _Tally(start, slots.release)
        submitted = 0
        while submitted % 64 or time.perf_counter() < deadline:
            slots.acquire()
            account, data = stream.next()
            t0 = time.perf_counter()
            cmd = writer.command(account, TRADE_OFFER_UPSERTED, data, source="bench")
            writer.submit(cmd).add_done_callback(partial(tally.done, t0))
            submitted += 1
        for _ in range(window):  # let the window drain
            slots.acquire()
    return tally.result(submitted, len(warm_up))
