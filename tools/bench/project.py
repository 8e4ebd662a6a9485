"""Scenario `project`: how fast each projector applies a prebuilt log.

The log (`--project-events`, 200,000 TradeOfferUpserted events over 4,096
accounts: half new offers with items, half state changes) is built first,
untimed, by an `eventlog.Writer` with fsync off and a deep window of appends in
flight, with Redis on so the partition streams hold every event. Then, each
from empty projections and in this process, the RedisProjector and the
FileProjector are driven by `projections.daemon.run(until_caught_up=True)`
with the batch sizes `tradelog project` uses, and only that run is timed
(under the run's fsync policy, `always` unless `--fsync`). Beside them, in the
same run: raw pipelined EVALSHA of a one-HSET script (the ceiling of any
per-event script).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import Future
from typing import Any

import orjson

from eventlog import AppendResult, Writer
from eventlog.records import TRADE_OFFER_UPSERTED
from eventlog.settings import Settings

from . import baselines
from .common import BenchContext, status
from .workload import OfferStream

__all__ = ["add_arguments", "run"]

_WINDOW = 8192
_EVALSHA_SECONDS = 3.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("project")
    g.add_argument("--project-events", type=int, default=200_000, help="events in the log")
    g.add_argument("--project-accounts", type=int, default=4096, help="accounts they touch")


def build_log(settings: Settings, events: int, accounts: int) -> float:
    """Append `events` upserts with fsync off and `_WINDOW` in flight; return seconds."""
    stream = OfferStream(seed=5, accounts=accounts)
    slots = threading.Semaphore(_WINDOW)
    failed: list[BaseException] = []

    def done(fut: Future[AppendResult]) -> None:
        if fut.exception() is not None:
            failed.append(fut.exception())  # type: ignore[arg-type]
        slots.release()

    start = time.perf_counter()
    with Writer(settings) as writer:
        for _ in range(events):
            slots.acquire()
            account, data = stream.next()
            cmd = writer.command(account, TRADE_OFFER_UPSERTED, data, source="bench")
            writer.submit(cmd).add_done_callback(done)
        for _ in range(_WINDOW):
            slots.acquire()
    if failed:
        raise RuntimeError(f"{len(failed)} appends failed building the log: {failed[0]!r}")
    return time.perf_counter() - start


def _drive(projector: Any, batch: int) -> tuple[int, float]:
    from projections.daemon import run as run_daemon

    start = time.perf_counter()
    count = run_daemon(projector, threading.Event(), until_caught_up=True, batch=batch)
    return count, time.perf_counter() - start


def _redis(settings: Settings) -> tuple[int, float]:
    from eventlog.redisconn import connect
    from projections.redis_projector import RedisProjector

    from ..cmd_project import DEFAULT_BATCH

    client = connect(settings, timeout_ms=30_000)
    assert client is not None
    try:
        return _drive(RedisProjector(settings, client), DEFAULT_BATCH["redis"])
    finally:
        client.close()


def _file(settings: Settings) -> tuple[int, float]:
    from projections.file_projector import FileProjector

    from ..cmd_project import DEFAULT_BATCH

    return _drive(FileProjector(settings), DEFAULT_BATCH["file"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = BenchContext.from_args(args)
    settings = ctx.settings
    events = args.project_events
    notes: list[str] = []

    status(f"building a log of {events:,} events over {args.project_accounts:,} accounts")
    took = build_log(settings.model_copy(update={"fsync": "off"}), events, args.project_accounts)
    notes.append(f"log built in {took:.1f} s ({events / took:,.0f}/s, fsync off)")

    status("raw pipelined EVALSHA (one HSET), batches of 100")
    client = ctx.redis()
    value = orjson.dumps(OfferStream(seed=9).next()[1]["offer"])
    raw = baselines.raw_evalsha_per_s(client, ctx.key("raw-evalsha"), value, _EVALSHA_SECONDS)
    client.close()

    status(f"Redis projector from empty (fsync {settings.fsync})")
    redis_n, redis_s = _redis(settings)
    status(f"file projector from empty (fsync {settings.fsync})")
    file_n, file_s = _file(settings)
    for name, n in (("redis", redis_n), ("file", file_n)):
        if n != events:
            notes.append(f"the {name} projector applied {n} events, not {events}: check it")
    notes.append(f"redis: {redis_n} events in {redis_s:.2f} s; file: {file_n} in {file_s:.2f} s")
    redis_rate, file_rate = redis_n / redis_s, file_n / file_s
    return {
        "figures": {
            "redis_events_per_s": round(redis_rate),
            "file_events_per_s": round(file_rate),
            "raw_evalsha_per_s": round(raw),
        },
        "ratios": {"redis_vs_raw_evalsha": round(redis_rate / raw, 3)},
        "notes": notes,
    }
