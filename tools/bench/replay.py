"""Scenario `replay`: rebuild both projections from a log of `--events` (1,000,000) events.

The log is generated straight into the partition segments, untimed, by
replay_log.generate_log: the bots' mix, mostly TradeOfferUpserted, over
`--replay-accounts` (10,000) accounts.

Then `projections.replay.rebuild` runs once for both projections, as `tradelog
replay all` does: one pass folds every account in memory (partitions split over
worker processes), then each worker writes each of its accounts once: its snapshot
file (thread pool, under the run's fsync policy, `always` unless `--fsync`) and its
Redis keys (pipelined whole-account scripts into the private redis-server); last,
both projectors' positions are set to the log end.

Figures: `file_seconds` and `redis_seconds` are each projection's write time in
that combined rebuild (the slowest worker's), `fold_seconds` the shared fold pass,
`total_seconds` the whole rebuild's wall time (the target: under 60 s), and
`events_per_s` = events / total_seconds.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .common import BenchContext, status
from .replay_log import generate_log

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replay")
    g.add_argument("--events", type=int, default=1_000_000, help="events in the log (replay)")
    g.add_argument("--replay-accounts", type=int, default=10_000, help="accounts they touch")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from projections.replay import rebuild

    ctx = BenchContext.from_args(args)
    settings = ctx.settings
    events = args.events
    notes: list[str] = []
    status(f"writing a log of {events:,} events over {args.replay_accounts:,} accounts")
    start = time.perf_counter()
    size = generate_log(settings.log_dir, settings.partitions, events, args.replay_accounts)
    took = time.perf_counter() - start
    notes.append(f"log generated in {took:.1f} s ({size / 2**20:,.0f} MiB)")
    status(f"rebuilding the file and Redis projections (fsync {settings.fsync})")
    report = rebuild(settings, ("file", "redis"))
    if report.events != events or report.parked:
        notes.append(f"the replay folded {report.events} events, not {events}, and parked "
                     f"{len(report.parked)} accounts: check the generator")  # fmt: skip
    notes.append(
        f"{report.accounts:,} accounts; file_seconds and redis_seconds are each projection's "
        "write time after one shared fold pass (fold_seconds); events_per_s = events / "
        "total_seconds (the whole rebuild, wall)"
    )
    total = report.seconds
    return {
        "figures": {
            "events": report.events,
            "file_seconds": round(report.write_seconds["file"], 3),
            "redis_seconds": round(report.write_seconds["redis"], 3),
            "fold_seconds": round(report.fold_seconds, 3),
            "total_seconds": round(total, 3),
            "events_per_s": round(report.events / total) if total else 0,
        },
        "ratios": {"total_vs_60s_target": round(total / 60, 3)},
        "notes": notes,
    }
