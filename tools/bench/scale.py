"""Scenario `scale`: append and apply rates with 10k vs 1M events already in the log.

Two logs side by side in one run, each in a data dir and under a key prefix of
its own (one Redis holds both): `--scale-small-events` (10,000) and
`--scale-events` (1,000,000) events of replay's mix over `--scale-accounts`
(10,000) accounts, written straight into the segments and the partition
streams, untimed (biglog). Both projectors' positions are set to each log's
end, as `tradelog replay` leaves them; the logs themselves are not projected:
their accounts are none of the timed events' accounts, so their projection
could not change what those cost. Only the log's length differs.

Each log gets an appending process (scale_append) that opens a Writer on it;
its start-up (each committer reads its whole partition once) is a note, in no
rate. Then `--scale-rounds` (3) rounds take the logs in turn, the order
alternating so that a shared machine's drifting load falls on both alike:

1. appends, timed: `--scale-apply` (40,000) TradeOfferUpserted events by 8
   tasks sharing the Writer, with `bench append`'s window in flight, under the
   run's fsync policy (`always` unless `--fsync`), from OfferStreams seeded
   alike for both logs, over 4,096 accounts new in each round (so every round
   starts from the same empty documents); rate = events acknowledged / wall;
2. applies, timed: the Redis projector (as many processes as `tradelog project
   redis` runs), then the file projector (one process), each built before the
   clock starts (project_share), catch up on exactly those events; rate =
   events applied / wall.

A figure is the best of a log's rounds (load from elsewhere only slows a round
down; every round's rates are in the notes). By the end the small log holds
10k + rounds x N events, the big one 1M + rounds x N. Ratios: the 1M rate /
the 10k rate (the target: at least 0.9, cost per event flat).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
from typing import Any

import redis

from eventlog.keys import Keys
from eventlog.log_end import log_ends
from eventlog.redisconn import connect
from eventlog.relay import Relay
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog

from ..cmd_project import processes as cmd_processes
from .biglog import drop_keys, make_log
from .common import BenchContext, status
from .project import redis_catch_up
from .project_share import run_shares
from .scale_append import Appender

__all__ = ["add_arguments", "run"]

_KINDS = ("append", "file_apply", "redis_apply")
# The logs' accounts: below those the rounds append to (scale_append), so none is both.
_PREFIX_FIRST_ACCOUNT, _MAX_ACCOUNTS = 76561199100000000, 20_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale")
    g.add_argument("--scale-events", type=int, default=1_000_000, help="events in the big log")
    g.add_argument("--scale-small-events", type=int, default=10_000, help="in the small log")
    g.add_argument(
        "--scale-apply", type=int, default=40_000, help="events appended, then applied, a round"
    )
    g.add_argument("--scale-rounds", type=int, default=3, help="rounds per log (best counts)")
    g.add_argument("--scale-accounts", type=int, default=10_000, help="accounts of the logs")


def _set_positions(settings: Settings) -> None:
    """Both projectors go on from the log's end, as a replay leaves them."""
    from projections.checkpoint import Checkpoint, write_checkpoint
    from projections.replay_redis import set_redis_positions

    ends = log_ends(settings)
    write_checkpoint(settings, Checkpoint(ends), sync=settings.fsync != "off")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=60)
    try:
        set_redis_positions(client, Keys(settings.key_prefix), ends)
    finally:
        client.close()


def _level_streams(settings: Settings) -> int:
    """Copy into the streams what an append could not write there (the relay's job)."""
    client = connect(settings)
    assert client is not None
    try:
        return Relay(settings, StreamLog(client, Keys(settings.key_prefix))).run_once().total
    finally:
        client.close()


def _round(
    settings: Settings, appender: Appender, round: int, events: int, due: int
) -> dict[str, Any]:
    """One round on one log: `events` appends, then both projectors catch up on them
    (and on `due` events appended before, untimed: the start-up's)."""
    got = appender.append(round, events)
    notes = []
    if got["failed"]:
        notes.append(f"{got['failed']} appends FAILED (first: {got['errors'][0]})")
    if got["not_written"]:
        copied = _level_streams(settings)
        notes.append(f"{got['not_written']} appends missed the stream; relayed {copied}")
    on_redis = redis_catch_up(settings, cmd_processes(settings))
    on_file = run_shares(settings, 1, "file")
    file_events = int(on_file.results[0]["events"])
    for name, applied in (("redis", on_redis.events), ("file", file_events)):
        if applied != got["acked"] + due:
            notes.append(f"the {name} projector applied {applied}, not {got['acked'] + due}")
    return {
        "append": got["acked"] / got["wall"],
        "redis_apply": on_redis.events / on_redis.seconds,
        "file_apply": file_events / on_file.wall,
        "notes": notes,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not 0 < args.scale_accounts <= _MAX_ACCOUNTS:
        raise SystemExit(f"--scale-accounts: 1 to {_MAX_ACCOUNTS:,}")
    ctx = BenchContext.from_args(args, fsync="always")
    base = ctx.settings
    logging.getLogger("tradelog").setLevel(logging.WARNING)
    one, five, _ = os.getloadavg()
    notes = [f"at the start: load average {one:.2f} {five:.2f} on {os.cpu_count()} cpus"]
    sizes = {"10k": args.scale_small_events, "1m": args.scale_events}
    logs = {
        label: base.model_copy(
            update={
                "data_dir": base.data_dir / f"scale-{label}",
                "key_prefix": f"{base.key_prefix}-scale-{label}",
            }
        )
        for label in sizes
    }
    rates: dict[str, dict[str, list[float]]] = {label: {k: [] for k in _KINDS} for label in sizes}
    try:
        with contextlib.ExitStack() as stack:
            appenders: dict[str, Appender] = {}
            for label, settings in logs.items():
                status(f"{label} log: writing {sizes[label]:,} events, opening a Writer on it")
                made = make_log(settings, sizes[label], args.scale_accounts, _PREFIX_FIRST_ACCOUNT)
                _set_positions(settings)
                appenders[label] = stack.enter_context(Appender(settings))
                startup = appenders[label].started["startup"]
                notes.append(
                    f"{label}: {made}; Writer start-up {startup:.2f} s (open, then the first "
                    "append to each partition, which reads it whole)"
                )
            # The new logs' dirty pages go to disk now, not during a timed part's fsyncs.
            os.sync()
            for r in range(args.scale_rounds):
                for label in list(sizes)[:: 1 if r % 2 == 0 else -1]:
                    status(f"round {r + 1}, {label} log: {args.scale_apply:,} appends, applies")
                    due = appenders[label].started["appended"] if r == 0 else 0
                    got = _round(logs[label], appenders[label], r, args.scale_apply, due)
                    for kind in _KINDS:
                        rates[label][kind].append(got[kind])
                    done = ", ".join(f"{k} {got[k]:,.0f}/s" for k in _KINDS)
                    notes += [f"{label} round {r + 1}: {done}"] + got["notes"]
    finally:
        for settings in logs.values():
            drop_keys(settings)
            shutil.rmtree(settings.data_dir, ignore_errors=True)
    figures: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for kind in _KINDS:
        small, big = max(rates["10k"][kind]), max(rates["1m"][kind])
        figures[f"{kind}_per_s_10k"] = round(small)
        figures[f"{kind}_per_s_1m"] = round(big)
        ratios[f"{kind}_1m_vs_10k"] = round(big / small, 3)
    one, five, _ = os.getloadavg()
    notes.append(f"at the end: load average {one:.2f} {five:.2f}")
    return {"figures": figures, "ratios": ratios, "notes": notes}
