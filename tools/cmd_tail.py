"""`tradelog tail`: follow the log live, filtered by account and type."""

from __future__ import annotations

import argparse
import threading

import orjson

from eventlog._exceptions import InvalidInput
from eventlog.events import check_steam_id
from eventlog.log_end import log_end
from eventlog.notify import APPENDED, Bell
from eventlog.records import EVENT_TYPES, StoredEvent, partition_of
from eventlog.segments import Cursor, partition_dir
from projections.daemon import install_stop_signals

from .cli import Subparsers, settings_from
from .console import StdoutConsole

__all__ = ["register"]


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tail",
        parents=[parent],
        help="follow the log live",
        description="Prints events as they are appended (Ctrl-C stops).",
    )
    p.add_argument("--account", help="only this account's events")
    p.add_argument("--type", dest="types", action="append", choices=sorted(EVENT_TYPES),
                   help="only events of this type (repeatable)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one envelope per line, as stored")
    p.add_argument("-n", "--lines", type=int, default=10,
                   help="start this many events back in each partition (default 10)")  # fmt: skip
    p.add_argument("--from-start", action="store_true", help="start at the beginning of the log")
    p.add_argument("--no-follow", action="store_true", help="print what is there, then exit")
    p.set_defaults(func=run)


def _pretty(e: StoredEvent) -> str:
    d = e.data
    if e.type == "TradeOfferUpserted":
        what = f"offer {d['offer'].get('trade_offer_id')} state={d['offer'].get('state', '-')}"
    elif e.type == "FriendNegotiationUpserted":
        what = f"friend {d['friend_steam_id']} state={d['negotiation'].get('state', '-')}"
    elif e.type == "FriendsRemoved":
        what = "friends " + ",".join(d["friend_steam_ids"])
    else:
        doc = d.get("document", d)
        what = (f"{len(doc.get('trade_offers') or ())} offers, "
                f"{len(doc.get('negotiations') or {})} friends")  # fmt: skip
    return (f"[dim]{e.ts}[/] p{e.partition:02d}:{e.offset:<8} [bold]{e.account}[/] "
            f"v{e.version:<5} [cyan]{e.type}[/] {what}")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise InvalidInput(f"-n/--lines: must be 0 or more (got {args.lines})")
    settings = settings_from(args)
    account = check_steam_id(args.account, "--account") if args.account else None
    types = set(args.types or ())
    partitions = (
        [partition_of(account, settings.partitions)] if account else range(settings.partitions)
    )
    console = StdoutConsole(highlight=False, soft_wrap=True)
    cursors: list[Cursor] = []
    for p in partitions:
        pdir = partition_dir(settings.log_dir, p)
        start = 0 if args.from_start else max(0, log_end(pdir) - args.lines)
        cursors.append(Cursor(pdir, p, start))
    stop = threading.Event()
    install_stop_signals(stop)
    bell = None if args.no_follow else Bell(settings.run_dir, APPENDED)
    try:
        while not stop.is_set():
            read = 0  # (what the filters show may be none of it: read on)
            for cursor in cursors:
                events, _ = cursor.read(limit=5000)
                read += len(events)
                for e in events:
                    if (account and e.account != account) or (types and e.type not in types):
                        continue
                    if args.json:
                        print(orjson.dumps(e.to_dict()).decode(), flush=False)
                    else:
                        console.print(_pretty(e))
            if not read:
                if bell is None:
                    break
                bell.wait(1.0)
    finally:
        if bell is not None:
            bell.close()
        for cursor in cursors:
            cursor.close()
    return 0
