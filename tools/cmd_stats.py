"""`tradelog stats`: events per partition and type, accounts, offers, friends, lag."""

from __future__ import annotations

import argparse
from collections import Counter

import orjson
from rich.table import Table

from eventlog.segments import Cursor, partition_dir

from .cli import Subparsers, settings_from
from .console import StdoutConsole

__all__ = ["register"]


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "stats",
        parents=[parent],
        help="counts of events, accounts, offers, friends; projector lag",
        description="Scans the log and the read projection and prints totals.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from api.reads import Reads
    from api.status import projector_status, summarize

    settings = settings_from(args)
    per_partition: dict[int, int] = {}
    per_type: Counter[str] = Counter()
    for p in range(settings.partitions):
        cursor = Cursor(partition_dir(settings.log_dir, p), p)
        try:
            while True:
                events, _ = cursor.read(limit=50_000)
                if not events:
                    break
                per_type.update(e.type for e in events)
        finally:
            cursor.close()
        per_partition[p] = cursor.next_offset
    reads = Reads(settings)
    try:
        totals = summarize(settings, reads)
        projectors = projector_status(settings, reads)
    finally:
        reads.close()
    out = {
        "events": sum(per_partition.values()),
        "events_by_partition": per_partition,
        "events_by_type": dict(sorted(per_type.items())),
        **{k: v for k, v in totals.items() if k != "events"},
        "projectors": {
            name: {
                **info,
                # None, not 0, when it could not be read (Redis down): unknown is not level.
                "lag": None if info.get("lag") is None else sum(info["lag"].values()),
                "lag_by_partition": info.get("lag"),
            }
            for name, info in projectors.items()
        },
    }
    if args.json:
        print(orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS).decode())
        return 0
    console = StdoutConsole()
    table = Table(title="tradelog stats", show_header=False)
    table.add_row("events", str(out["events"]))
    for p, n in per_partition.items():
        table.add_row(f"  partition p{p:02d}", str(n))
    for t, n in out["events_by_type"].items():
        table.add_row(f"  {t}", str(n))
    table.add_row(f"accounts ({totals['source']})", str(totals["accounts"]))
    table.add_row("trade offers", str(totals["trade_offers"]))
    for state, n in totals["trade_offers_by_state"].items():
        table.add_row(f"  {state}", str(n))
    table.add_row("friends", str(totals["friends"]))
    for name, info in out["projectors"].items():
        lag = info["lag"] if info["lag"] is not None else f"unknown: {info.get('error', '?')}"
        table.add_row(f"projector {name}: lag", str(lag))
        table.add_row(f"projector {name}: parked", str(len(info.get("parked") or [])))
    console.print(table)
    return 0
