"""`tradelog replay file|redis`: rebuild a projection from the file log, the truth."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from eventlog._exceptions import InvalidInput
from projections.replay import (
    TARGETS,
    AccountResult,
    ReplayReport,
    rebuild,
    replay_accounts,
    replay_file_live,
)
from projections.replay_live_redis import replay_redis_live

from .cli import Subparsers, settings_from
from .console import Bar, progress_bar

__all__ = ["EventRate", "ProgressMeter", "progress_meter", "register"]


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "replay",
        parents=[parent],
        help="rebuild a projection (file snapshots or the Redis schema) from the file log",
        description=(
            "Rebuilds a projection from the file log in one pass, each account written once, "
            "then sets the projector's position to the log end so its daemon goes on from "
            "there. Offline by default: refused while that projector runs (Redis: unless "
            "--force). Accounts parked before are rebuilt and unparked. Exit 0 when done, 1 "
            "when some account still does not fold (it is parked), 2 on errors."
        ),
    )
    p.add_argument(
        "projection", choices=[*TARGETS, "all"], help="which projection (all: both, one pass)"
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="build a fresh copy beside the live one while the daemons run, catch up, "
        "switch reads to it atomically and drop the old copy (files: data/negotiations "
        "becomes a symlink; Redis: a fresh key prefix, swapped in account by account)",
    )
    p.add_argument(
        "--account",
        action="append",
        metavar="ID",
        help="rebuild only this account (repeatable) and re-apply it if it was parked",
    )
    p.add_argument(
        "--force", action="store_true", help="replay Redis even though its projector seems to run"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: 2 per core)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


class EventRate(ProgressColumn):
    """Events per second, as the bar measures them."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "… events/s", style="cyan")


class ProgressMeter:
    """projections.replay.Meter over a rich progress bar (on stderr)."""

    def __init__(self, bar: Bar) -> None:
        self.bar = bar
        self.task: TaskID | None = None

    def start(self, total: int, what: str) -> None:
        self.task = self.bar.add_task(what, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)


@contextmanager
def progress_meter() -> Iterator[ProgressMeter]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        EventRate(),
        TimeRemainingColumn(),
    )
    with progress_bar(*columns) as bar:
        yield ProgressMeter(bar)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    targets = TARGETS if args.projection == "all" else (args.projection,)
    if args.workers is not None and args.workers < 1:
        raise InvalidInput(f"--workers: must be at least 1 (got {args.workers})")
    if args.account:
        if args.live:
            raise InvalidInput("--account rebuilds one account in place: it takes no --live")
        results = replay_accounts(settings, args.account, targets)
        _print_accounts(results, args.json)
        return 1 if any(r.error for r in results) else 0
    with progress_meter() as meter:
        if args.live and targets == ("redis",):
            report = replay_redis_live(settings, meter)
        elif args.live:
            report = replay_file_live(settings, workers=args.workers, meter=meter)
            if "redis" in targets:
                _print_report(report, args.json)
                report = replay_redis_live(settings, meter)
        else:
            report = rebuild(settings, targets, force=args.force, workers=args.workers, meter=meter)
    _print_report(report, args.json)
    return 1 if report.parked else 0


def _print_report(report: ReplayReport, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(report.as_dict()).decode())
        return
    rate = report.events / report.seconds if report.seconds else 0.0
    what = " and ".join(report.targets)
    print(
        f"replay {what} ({report.mode}): {report.events:,} events, {report.accounts:,} "
        f"accounts in {report.seconds:.2f} s ({rate:,.0f} events/s)"
    )
    writes = ", ".join(f"{t} {s:.2f} s" for t, s in report.write_seconds.items())
    print(f"  fold {report.fold_seconds:.2f} s; writes: {writes or 'none'}")
    ends = " ".join(f"p{p}:{end}" for p, end in sorted(report.ends.items()))
    print(f"  projector positions set to the log end: {ends}")
    if report.cleared:
        print(f"  parked records cleared (rebuilt from the log): {report.cleared}")
    for account, error in sorted(report.parked.items()):
        print(f"  PARKED {account}: its events still do not fold: {error}")
    for note in report.notes:
        print(f"  note: {note}")


def _print_accounts(results: list[AccountResult], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps({"accounts": [r.as_dict() for r in results]}).decode())
        return
    for r in results:
        if r.error:
            print(f"replay {r.account}: NOT rebuilt, it stays parked: {r.error}")
            continue
        done = ", ".join(f"{t} {what}" for t, what in r.done.items())
        print(f"replay {r.account}: version {r.version} from the log; {done}")
        for target, count in r.unparked.items():
            print(f"  {target}: unparked ({count} waiting events re-applied or skipped)")
