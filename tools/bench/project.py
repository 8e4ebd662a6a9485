"""Scenario `project`: how fast each projector applies a prebuilt log.

The log (`--project-events`, 200,000 TradeOfferUpserted events over 4,096
accounts: half new offers with items, half state changes) is built first,
untimed, by an `eventlog.Writer` with fsync off and a deep window of appends in
flight, with Redis on so the partition streams hold every event. Then, each
from empty projections, the Redis projector and the file projector are driven
by `projections.daemon.run(until_caught_up=True)` with the batch sizes
`tradelog project` uses, and only that run is timed (under the run's fsync
policy, `always` unless `--fsync`). The Redis projector runs as `tradelog
project redis` does: as many processes as TRADELOG_REDIS_PROJECTOR_PROCESSES
says (`--project-processes` here; one per CPU by default), each on its share of the
partitions (tools.bench.project_share), all started before the clock starts.
Beside them, in the same run, the ceiling DESIGN compares the Redis projector
with, raw pipelined EVALSHA through redis-py: the projector's own offer script,
one call per event of the log, its arguments made ready outside the clock
(tools.bench.project_calls); and, as a further figure, a one-HSET script (the
floor of any per-event script).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any, NamedTuple

import orjson

from eventlog import AppendResult, Writer
from eventlog.records import TRADE_OFFER_UPSERTED
from eventlog.relay import Relay
from eventlog.settings import Settings
from lua import source
from projections.redis_scripts import UPSERT_OFFER

from ..cmd_project import processes as cmd_processes
from . import baselines
from .common import BenchContext, status
from .http_cpu import redis_cpu_seconds
from .project_calls import upsert_calls
from .project_share import run_shares
from .workload import OfferStream

__all__ = ["Applied", "add_arguments", "redis_catch_up", "run"]

_WINDOW = 8192
_EVALSHA_SECONDS = 3.0
_RAW_CALLS = 20_000  # events of the log the raw EVALSHA ceiling cycles through


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cpus"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("project")
    g.add_argument("--project-events", type=int, default=200_000, help="events in the log")
    g.add_argument("--project-accounts", type=int, default=4096, help="accounts they touch")
    g.add_argument(
        "--project-processes",
        type=int,
        default=None,
        help="Redis projector processes (default: as `tradelog project redis`)",
    )


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
        if writer.stream is not None:
            # A stream append that timed out under load leaves the stream short: level
            # it, so the Redis projector is measured on every event.
            Relay(settings, writer.stream).run_once()
    if failed:
        raise RuntimeError(f"{len(failed)} appends failed building the log: {failed[0]!r}")
    return time.perf_counter() - start


class Applied(NamedTuple):
    events: int
    seconds: float  # wall
    cpu: float  # this process's CPU seconds meanwhile (the fold, encoding, I/O calls)
    redis_cpu: float  # Redis's CPU seconds meanwhile (scripts, stream reads)

    def note(self, name: str) -> str:
        per = 1e6 / max(1, self.events)
        return (
            f"{name}: {self.events} events in {self.seconds:.2f} s; per event "
            f"{self.seconds * per:.1f} µs wall, {self.cpu * per:.1f} µs of its own CPU, "
            f"{self.redis_cpu * per:.1f} µs of Redis CPU"
        )


def _drive(projector: Any, batch: int, redis_url: str) -> Applied:
    from projections.daemon import run as run_daemon

    redis0, cpu0, start = redis_cpu_seconds(redis_url), time.process_time(), time.perf_counter()
    count = run_daemon(projector, threading.Event(), until_caught_up=True, batch=batch)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return Applied(count, wall, cpu, redis_cpu_seconds(redis_url) - redis0)


def redis_catch_up(settings: Settings, processes: int) -> Applied:
    """The Redis projector's processes catch up together, from where they stand."""
    shares = run_shares(settings, processes, "redis")
    events = sum(int(r["events"]) for r in shares.results)
    cpu = sum(float(r["cpu"]) for r in shares.results)
    return Applied(events, shares.wall, cpu, shares.redis_cpu)


def _file(settings: Settings) -> Applied:
    from projections.file_projector import FileProjector

    from ..cmd_project import DEFAULT_BATCH

    # As `tradelog project file` runs it: a process that is only the projector.
    projector = FileProjector(settings, freeze_gc=True)
    return _drive(projector, DEFAULT_BATCH["file"], settings.redis_url)


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = BenchContext.from_args(args)
    settings = ctx.settings
    events = args.project_events
    notes: list[str] = []

    notes.append(f"at the start: {_load()}")
    status(f"building a log of {events:,} events over {args.project_accounts:,} accounts")
    took = build_log(settings.model_copy(update={"fsync": "off"}), events, args.project_accounts)
    notes.append(f"log built in {took:.1f} s ({events / took:,.0f}/s, fsync off)")

    client = ctx.redis()
    status("raw pipelined EVALSHA of the offer script, batches of 100")
    ready = upsert_calls(settings, client, ctx.key("raw-upsert"), _RAW_CALLS)
    script = source(UPSERT_OFFER)
    raw = baselines.raw_script_per_s(
        client, script, ready.calls, ready.reset, _EVALSHA_SECONDS, clear=ready.clear
    )
    status("raw pipelined EVALSHA of a one-HSET script, batches of 100")
    value = orjson.dumps(OfferStream(seed=9).next()[1]["offer"])
    hset = baselines.raw_evalsha_per_s(client, ctx.key("raw-evalsha"), value, _EVALSHA_SECONDS)
    client.close()

    # The projectors log each partition they take and their totals: keep stderr readable.
    logging.getLogger("tradelog").setLevel(logging.WARNING)
    processes = cmd_processes(settings, args.project_processes)
    status(f"Redis projector from empty, {processes} processes ({_load()})")
    on_redis = redis_catch_up(settings, processes)
    status(f"file projector from empty, fsync {settings.fsync} ({_load()})")
    on_file = _file(settings)
    for name, got in (("redis", on_redis), ("file", on_file)):
        if got.events != events:
            notes.append(f"the {name} projector applied {got.events} events, not {events}")
    notes += [
        on_redis.note(f"redis ({processes} processes)"),
        on_file.note("file"),
        f"at the end: {_load()}",
    ]
    redis_rate = on_redis.events / on_redis.seconds
    file_rate = on_file.events / on_file.seconds
    return {
        "figures": {
            "redis_events_per_s": round(redis_rate),
            "file_events_per_s": round(file_rate),
            "raw_evalsha_per_s": round(raw),
            "raw_evalsha_hset_per_s": round(hset),
        },
        "ratios": {"redis_vs_raw_evalsha": round(redis_rate / raw, 3)},
        "notes": notes,
    }
