"""Scenario `append`: library appends, 8 concurrent writers, fsync=always.

By default the eight writers are concurrent tasks of one process sharing its
`eventlog.Writer` (one Writer per process is how the API and the import tool
use the library), each keeping a window of TradeOfferUpserted appends in
flight for a fixed time. With `--processes` each writer is a process with its
own Writer on the same data dir, so the partitions' flocks are contended
across processes and every batch starts by catching up on what the others
appended (those workers are in append_library). Beside it, in the same run:
raw pipelined XADD of entries of the same shape (the ceiling, the mean of a
sample before the library's run and one after), and the legacy scheme's upsert
from as many processes (the floor).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from eventlog.keys import Keys

from . import baselines
from .append_library import IN_FLIGHT, WRITERS, library_tasks, library_writer
from .common import BenchContext, status
from .legacy import LegacyStore
from .legacy_docs import make_document, make_offer, steam_ids
from .workload import percentile, run_processes, sample_events

__all__ = ["add_arguments", "run"]

_XADD_SECONDS = 2.0
_LEGACY_SECONDS = 4.0
_LEGACY_ACCOUNTS = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("append")
    g.add_argument("--writers", type=int, default=WRITERS, help=f"writers (default {WRITERS})")
    g.add_argument(
        "--in-flight",
        type=int,
        default=IN_FLIGHT,
        help=f"appends in flight per writer (default {IN_FLIGHT})",
    )
    g.add_argument(
        "--processes",
        action="store_true",
        help="one process (and Writer) per writer instead of tasks sharing one Writer",
    )


def _legacy_writer(index: int, params: dict[str, Any], wait_for_go: Callable[[], None]) -> Any:
    """One legacy process: read-modify-write upserts on random accounts for `seconds`."""
    store = LegacyStore(Path(params["root"]))
    accounts: list[str] = params["accounts"]
    rng = random.Random(index)
    existing = [str(8_189_748_113 + i) for i in range(200)]  # make_document's offer ids
    friend = steam_ids(1, start=76561198123456789)[0]
    fresh = [make_offer(rng, 20_000_000_000 + index * 100_000 + i, friend) for i in range(500)]
    wait_for_go()
    start = time.perf_counter()
    deadline = start + params["seconds"]
    latencies = []
    while time.perf_counter() < deadline:
        account = accounts[rng.randrange(len(accounts))]
        if rng.random() < 0.5 and fresh:
            offer = fresh.pop()
        else:
            offer = {"trade_offer_id": rng.choice(existing), "state": "Accepted"}
        t0 = time.perf_counter()
        store.upsert_offer(account, offer)
        latencies.append(time.perf_counter() - t0)
    return {"start": start, "end": time.perf_counter(), "latencies": latencies}


def _stream_entries(client: redis.Redis, keys: Keys, partitions: int) -> int:
    return sum(int(client.xlen(keys.log(p))) for p in range(partitions))


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = BenchContext.from_args(args, fsync="always")
    settings = ctx.settings
    seconds = ctx.duration(10.0)
    notes: list[str] = []

    how = "processes" if args.processes else "tasks sharing one Writer"
    status(
        f"library appends: {args.writers} writers ({how}) x {args.in_flight} in flight, "
        f"{seconds:g} s"
    )
    # The ceiling is measured before and after the library's run, and averaged: on a
    # shared machine one 2-second sample moves by a quarter from one minute to the next.
    status(f"raw pipelined XADD through redis-py, batches of 100, {_XADD_SECONDS:g} s")
    sample = [e.stream_fields() for e in sample_events(1000, settings.partitions)]
    client = ctx.redis()
    raw_before = baselines.raw_xadd_per_s(client, ctx.key("raw-xadd"), sample, _XADD_SECONDS)
    params = {
        "settings": settings,
        "in_flight": args.in_flight,
        "seconds": seconds,
        "writers": args.writers,
    }
    if args.processes:
        lib = run_processes(library_writer, [params] * args.writers, timeout=seconds + 120)
    else:
        lib = run_processes(library_tasks, [params], timeout=seconds + 120)[0]
    failed = sum(r["failed"] for r in lib)
    acked = sum(r["submitted"] for r in lib) - failed
    wall = max(r["end"] for r in lib) - min(r["start"] for r in lib)
    latencies = [x for r in lib for x in array("d", r["latencies"])]
    not_written = sum(r["not_written"] for r in lib)
    if failed:
        first = next(e for r in lib for e in r["errors"])
        notes.append(f"{failed} appends FAILED (first: {first}); the figures are not valid")
    if not_written:
        notes.append(f"{not_written} appends were not written to Redis (relay's job)")
    appended = acked + sum(r["warm_up"] for r in lib)
    entries = _stream_entries(client, Keys(settings.key_prefix), settings.partitions)
    if entries != appended:
        notes.append(f"this run appended {appended} events but the streams hold {entries}")

    status(f"raw pipelined XADD again, {_XADD_SECONDS:g} s")
    raw_after = baselines.raw_xadd_per_s(client, ctx.key("raw-xadd"), sample, _XADD_SECONDS)
    client.close()
    raw_xadd = (raw_before + raw_after) / 2
    notes.append(f"raw XADD {raw_before:.0f}/s before the library's run, {raw_after:.0f}/s after")

    status(f"legacy upserts: {args.writers} processes x {_LEGACY_SECONDS:g} s")
    legacy_root = settings.data_dir / "legacy"
    accounts = steam_ids(_LEGACY_ACCOUNTS, start=76561199100000000)
    doc_bytes = LegacyStore(legacy_root).seed(accounts, make_document(accounts[0]))
    legacy_params = {"root": str(legacy_root), "accounts": accounts, "seconds": _LEGACY_SECONDS}
    leg = run_processes(_legacy_writer, [legacy_params] * args.writers, _LEGACY_SECONDS + 120)
    leg_count = sum(len(r["latencies"]) for r in leg)
    leg_wall = max(r["end"] for r in leg) - min(r["start"] for r in leg)
    leg_p50 = percentile([x for r in leg for x in r["latencies"]], 50) * 1000
    notes.append(f"{acked} events acknowledged in {wall:.2f} s by {args.writers} writers ({how})")
    notes.append(
        f"legacy: {_LEGACY_ACCOUNTS} accounts of {doc_bytes / 1024:.0f} KiB indented JSON "
        f"(200 offers, 50 friends), {leg_count} upserts, p50 {leg_p50:.1f} ms; "
        f"cpu count {os.cpu_count()}"
    )

    events_per_s = acked / wall
    legacy_per_s = leg_count / leg_wall
    return {
        "figures": {
            "events_per_s": round(events_per_s),
            "p50_ms": round(percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 99) * 1000, 3),
            "raw_xadd_per_s": round(raw_xadd),
            "legacy_upserts_per_s": round(legacy_per_s, 1),
        },
        "ratios": {
            "vs_raw_xadd": round(events_per_s / raw_xadd, 3),
            "vs_legacy": round(events_per_s / legacy_per_s, 1),
        },
        "notes": notes,
    }
