"""Scenario `memory`: the resident memory of an API worker and of both projectors.

API worker: `tradelog serve` with one worker (uvicorn then serves in that very
process) and the file projector beside it, as http_stack starts them. Warm-up:
a ~300 KB document (legacy_docs.make_document: 200 offers, 50 friends) POSTed to 4
accounts, then `--memory-requests` (4,000) requests over 8 keep-alive
connections: every fourth a GET of one of those documents, the others `bench
http`'s sustained mix of writes (atomic upserts, friend PUTs, small saves).
Figure: the worker's VmRSS then (its peak, VmHWM, in a note).

Projectors: a small and a large log (`--memory-small` 300,000 and
`--memory-large` 3,000,000 events of replay's mix over the same
`--memory-accounts` accounts, in the segments and the streams: biglog), one
after the other, each in a data dir of its own. On each, the Redis projector
(as many processes as `tradelog project redis` runs) and then the file
projector (one process), built as `tradelog project` builds them
(project_share), apply the whole log from empty; each process reads its peak
resident set (VmHWM) once caught up. Figure: the peak of the largest process.
Final VmRSS values are in the notes. All in MiB, from /proc/<pid>/status.

Why 200 accounts by default, and a steady log (replay_log): the projectors cache
account documents (the file projector up to 128 MiB of snapshots, the Redis
projector up to 20,000 accounts), so their memory follows what the documents
hold. In replay's mix a document grows until a whole-document save replaces it,
every ~200 events of the account; with ~1,500 and ~15,000 events per account both
logs' documents have reached that size. The steady log saves each account every
200th event of its own, in turn, so both logs end with documents of about the same
total (the notes give each log's snapshot bytes): with saves by chance that
total is a random walk, 16.7 MiB after the first 100,000 events of the default
log and 20.1 after 1,000,000, and the ratio measured the walk as much as the
log's length. With 10,000 accounts the large log's documents are ~7x the
small one's, and so are the caches.

Why 300,000 events in the small log: a projector's peak settles only after a few
dozen batches, as the allocator's arenas find their steady state while the
cached documents are replaced piece by piece. Measured on the steady log (file
projector; Redis projector, two processes): 120 and 179 MiB after 100,000
events, 129-132 and 198 after 300,000, 134 and 198 after 1,000,000, 133-135
and 202-203 after 3,000,000 (two runs each where a range is given). A
100,000-event log measured that warm-up, not the log's length.

Ratios: large / small (flat: about 1).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

from eventlog.settings import Settings

from ..cmd_project import processes as cmd_processes
from .biglog import drop_keys, make_log
from .common import BenchContext, status
from .legacy_docs import steam_ids
from .project_share import memory_kb, run_shares

if TYPE_CHECKING:
    from .http_stack import Stack

__all__ = ["add_arguments", "run"]

_DOC_ACCOUNTS = steam_ids(4, start=76561199400000000)  # none of the write mix's accounts
_CONNECTIONS = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("memory")
    g.add_argument("--memory-requests", type=int, default=4000, help="API warm-up requests")
    g.add_argument("--memory-small", type=int, default=300_000, help="events in the small log")
    g.add_argument("--memory-large", type=int, default=3_000_000, help="events in the large")
    g.add_argument("--memory-accounts", type=int, default=200, help="accounts of both logs")


def _mib(kb: int) -> float:
    return round(kb / 1024, 1)


def _warm_up(stack: Stack, requests: int) -> dict[str, Any]:
    """The mixed requests on `_CONNECTIONS` connections; what they answered."""
    import asyncio

    from . import http_write
    from .http_sustained import tradelog_requests
    from .loadgen import connect, request_bytes, run_loop

    size = http_write.seed(stack, _DOC_ACCOUNTS)
    writes = tradelog_requests({"index": 0, "key": stack.key})
    gets = [request_bytes("GET", f"/negotiations/{a}", stack.key) for a in _DOC_ACCOUNTS]
    todo = (gets[i // 4 % len(gets)] if i % 4 == 0 else writes() for i in range(requests))
    out: dict[str, Any] = {"ok": 0, "failed": 0, "errors": [], "bytes": size}

    async def one() -> None:
        conn = await connect(stack.host, stack.port)
        try:
            for raw in todo:  # shared: each connection takes the next request in turn
                code, body = await conn.send(raw)
                if code < 300:
                    out["ok"] += 1
                    continue
                out["failed"] += 1
                if len(out["errors"]) < 3:
                    out["errors"].append(f"{code} {body[:200]!r}")
        finally:
            conn.close()

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(_CONNECTIONS)))

    run_loop(main())
    return out


def _api(settings: Settings, requests: int, notes: list[str]) -> float:
    from .http_stack import Stack

    with Stack(settings, workers=1) as stack:
        status(f"API worker: {requests:,} warm-up requests incl. GETs of ~300 KB documents")
        got = _warm_up(stack, requests)
        mem = memory_kb(stack.children["serve"][0].pid)
    failed = f"{got['failed']} failed {got['errors']}" if got["failed"] else "none failed"
    notes.append(
        f"API worker: {got['ok']} requests answered, {failed}; documents of "
        f"{got['bytes'] / 1024:.0f} KiB (compact JSON); VmRSS {_mib(mem.get('VmRSS', 0))} MiB, "
        f"peak {_mib(mem.get('VmHWM', 0))} MiB"
    )
    return _mib(mem.get("VmRSS", 0))


def _snapshot_bytes(settings: Settings) -> int:
    return sum(
        entry.stat().st_size
        for entry in os.scandir(settings.snapshot_dir)
        if entry.is_file() and not entry.name.startswith(".")  # not the spares (atomic.py)
    )


def _projectors(settings: Settings, events: int, accounts: int) -> tuple[dict[str, float], str]:
    """Both projectors' peak MiB after applying a fresh log of `events`; and a note."""
    made = make_log(settings, events, accounts, steady=True)
    processes = cmd_processes(settings)
    status(f"{events:,} events: the Redis projector ({processes} processes), then the file one")
    peaks: dict[str, float] = {}
    finals: list[str] = []
    for name, count in (("redis", processes), ("file", 1)):
        results = run_shares(settings, count, name).results
        applied = sum(int(r["events"]) for r in results)
        if applied != events:
            finals.append(f"the {name} projector applied {applied} events, not {events}")
        peaks[name] = _mib(max(int(r["hwm_kb"]) for r in results))
        rss = ", ".join(str(_mib(int(r["rss_kb"]))) for r in results)
        finals.append(f"{name} peak {peaks[name]} MiB, final {rss} MiB")
    snapshots = _snapshot_bytes(settings) / 2**20
    return peaks, f"{made}; snapshots {snapshots:,.1f} MiB; " + "; ".join(finals)


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = BenchContext.from_args(args)
    base = ctx.settings
    logging.getLogger("tradelog").setLevel(logging.WARNING)
    notes: list[str] = []
    api_rss = _api(base, args.memory_requests, notes)
    peaks: dict[str, dict[str, float]] = {}
    for label, events in (("small", args.memory_small), ("large", args.memory_large)):
        # Its own data dir and keys: apart from the API's, and removed once measured.
        where = {
            "data_dir": base.data_dir / f"memory-{label}",
            "key_prefix": f"{base.key_prefix}-memory",
        }
        settings = base.model_copy(update=where)
        status(f"{label} log: writing {events:,} events over {args.memory_accounts:,} accounts")
        try:
            peaks[label], note = _projectors(settings, events, args.memory_accounts)
        finally:
            drop_keys(settings)
            shutil.rmtree(settings.data_dir, ignore_errors=True)
        notes.append(f"{label}: {note}")
    figures = {"api_worker_rss_mb": api_rss}
    ratios = {}
    for name in ("file", "redis"):
        small, large = peaks["small"][name], peaks["large"][name]
        figures[f"{name}_projector_rss_mb_small"] = small
        figures[f"{name}_projector_rss_mb_large"] = large
        ratios[f"{name}_projector_large_vs_small"] = round(large / small, 3)
    return {"figures": figures, "ratios": ratios, "notes": notes}
