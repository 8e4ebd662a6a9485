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

__all__ = ["library_tasks", "library_writer"]


def library_tasks(index: int, params: dict[str, Any], wait_for_go: Callable[[], None]) -> Any:
    """One process, one Writer, `writers` asyncio tasks each with a window in flight."""
    settings = params["settings"]
    window: int = params["in_flight"]
    count: int = params["writers"]
    tune_for_service()  # as `tradelog serve` and the CLI run a Writer

    async def main() -> list[dict[str, Any]]:
        streams = [OfferStream(seed=i) for i in range(count)]
        with Writer(settings) as writer:
            for account in streams[0].account_per_partition(settings.partitions):
                data = streams[0].next()[1]
                await writer.append_async(account, TRADE_OFFER_UPSERTED, data, source="bench")
            wait_for_go()
            start = time.perf_counter()
            deadline = start + params["seconds"]

            async def one(stream: OfferStream) -> dict[str, Any]:
                # A done-callback per append and a semaphore for the window: asyncio.wait
                # over the whole window would cost the harness O(window) per wake-up.
                latencies = array("d")
                failed: list[BaseException] = []
                unwritten = 0
                slots = asyncio.Semaphore(window)
                submitted = 0
                last = start

                def done(t0: float, fut: asyncio.Future[AppendResult]) -> None:
                    nonlocal unwritten, last
                    last = time.perf_counter()
                    latencies.append(last - t0)
                    if fut.exception() is not None:
                        failed.append(fut.exception())  # type: ignore[arg-type]
                    elif not fut.result().redis_written:
                        unwritten += 1
                    slots.release()

                while time.perf_counter() < deadline:
                    await slots.acquire()
                    account, data = stream.next()
                    t0 = time.perf_counter()
                    cmd = writer.command(account, TRADE_OFFER_UPSERTED, data, source="bench")
                    writer.submit_async(cmd).add_done_callback(partial(done, t0))
                    submitted += 1
                for _ in range(window):  # let the window drain
                    await slots.acquire()
                return {
                    "submitted": submitted,
                    "warm_up": 0,
                    "start": start,
                    "end": last,
                    "errors": [repr(e) for e in failed[:5]],
                    "failed": len(failed),
                    "not_written": unwritten,
                    "latencies": latencies.tobytes(),
                }

            results = await asyncio.gather(*(one(s) for s in streams))
        results[0]["warm_up"] = settings.partitions
        return list(results)

    return asyncio.run(main())


def library_writer(index: int, params: dict[str, Any], wait_for_go: Callable[[], None]) -> Any:
    """One writer process: a Writer, a window of appends in flight, for `seconds`."""
    settings = params["settings"]
    window: int = params["in_flight"]
    stream = OfferStream(seed=index)
    slots = threading.Semaphore(window)
    latencies = array("d")
    # Callbacks run on several committer threads: only single appends and stores
    # here, which the GIL makes atomic, so no lock is added to the measured path.
    failed: list[BaseException] = []
    unwritten: list[str] = []
    last = [0.0]

    def done(t0: float, fut: Future[AppendResult]) -> None:
        end = time.perf_counter()
        latencies.append(end - t0)
        error = fut.exception()
        if error is not None:
            failed.append(error)
        elif not fut.result().redis_written:
            unwritten.append(fut.result().account)
        last[0] = end
        slots.release()

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
        submitted = 0
        while submitted % 64 or time.perf_counter() < deadline:
            slots.acquire()
            account, data = stream.next()
            t0 = time.perf_counter()
            cmd = writer.command(account, TRADE_OFFER_UPSERTED, data, source="bench")
            writer.submit(cmd).add_done_callback(partial(done, t0))
            submitted += 1
        for _ in range(window):  # let the window drain
            slots.acquire()
    return {
        "submitted": submitted,
        "warm_up": len(warm_up),
        "start": start,
        "end": last[0],
        "errors": [repr(e) for e in failed[:5]],
        "failed": len(failed),
        "not_written": len(unwritten),
        "latencies": latencies.tobytes(),
    }
