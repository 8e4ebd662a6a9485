"""Scenario `http`: the API over real HTTP, beside the legacy scheme and a bare endpoint.

Sub-scenarios (all by default; `--http-only a,b` picks some):

- `upsert80`: 80 concurrent atomic upserts on one pre-seeded account, all
  acknowledged and projected; median wall of rounds vs the legacy 80 (http_write);
- `latency`: one client, sequential upserts, p50/p99 (http_write);
- `read`: GET of a ~300 KB document in phase 1 (file), phase 2 (Redis, after the
  Redis projector caught up) and the legacy read-and-parse (http_read);
- `sustained`: 64 connections, 2 workers, `--duration` s (30) of mixed writes vs
  the bare Starlette+XADD endpoint under the same load (http_sustained).

Each stage runs `tradelog serve` and its projectors as child processes
(http_stack) on the bench's private Redis and temp data dir, and stops them.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from .common import BenchContext, status
from .http_cpu import fsync_probe
from .legacy_docs import steam_ids

__all__ = ["add_arguments", "run"]

PARTS = ("upsert80", "latency", "read", "sustained")
FIGURES = (
    "upsert80_ms",
    "legacy_upsert80_ms",
    "p50_ms",
    "p99_ms",
    "sustained_events_per_s",
    "bare_endpoint_per_s",
    "get_p50_ms_phase1",
    "get_p50_ms_phase2",
    "legacy_get_p50_ms",
)
_UPSERT80_ACCOUNT, _READ_ACCOUNT = steam_ids(2, start=76561199200000000)
_LATENCY_ACCOUNTS = steam_ids(8, start=76561199300000000)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("http")
    g.add_argument("--http-only", default=",".join(PARTS), help=f"comma list of {PARTS}")
    g.add_argument("--http-rounds", type=int, default=5, help="upsert80 rounds (median)")
    g.add_argument("--http-requests", type=int, default=2000, help="latency/read requests")
    g.add_argument("--http-clients", type=int, default=2, help="sustained client processes")
    g.add_argument("--http-connections", type=int, default=64, help="sustained connections")
    g.add_argument(
        "--http-sustained-phase",
        type=int,
        choices=(1, 2),
        default=1,
        help="sustained: the read model writes wait for (1: file snapshots, the default)",
    )
    g.add_argument(
        "--http-profile",
        metavar="DIR",
        type=Path,
        default=None,
        help="run the tradelog processes under cProfile: DIR/<stage>/<process>.prof "
        "(with 1 worker, the only one cProfile sees; slows everything down)",
    )


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cpus"


def _profile(args: argparse.Namespace, stage: str) -> Path | None:
    return args.http_profile / stage if args.http_profile else None


def _phase1(
    ctx: BenchContext, args: argparse.Namespace, parts: set[str], out: dict[str, Any]
) -> None:
    from . import http_read, http_write
    from .http_stack import Stack

    legacy_root = ctx.settings.data_dir / "legacy"
    with Stack(ctx.settings, profile_dir=_profile(args, "phase1")) as stack:
        status(f"phase 1 up on port {stack.port}; seeding ~300 KB documents ({_load()})")
        size = http_write.seed(stack, [_UPSERT80_ACCOUNT, _READ_ACCOUNT, *_LATENCY_ACCOUNTS])
        out["notes"].append(f"seeded documents of {size / 1024:.0f} KiB (compact JSON)")
        if "upsert80" in parts:
            status(f"upsert80: {args.http_rounds} rounds of 80 concurrent upserts")
            r = http_write.upsert80(stack, _UPSERT80_ACCOUNT, args.http_rounds)
            out["figures"]["upsert80_ms"] = round(r["median_ms"], 2)
            out["notes"].append(
                f"upsert80: {r['projected']}/{r['answered']} projected; rounds ms "
                + ", ".join(f"{w * 1000:.1f}" for w in r["walls"])
            )
        if "latency" in parts:
            status(f"latency: {args.http_requests} sequential upserts")
            before = stack.append_seconds()
            r = http_write.latency(stack, _LATENCY_ACCOUNTS, args.http_requests, 200)
            appended = stack.append_ms(before)
            out["figures"]["p50_ms"] = round(r["p50_ms"], 3)
            out["figures"]["p99_ms"] = round(r["p99_ms"], 3)
            out["notes"].append(
                f"latency: {r['not_projected']} answers not projected; the durable append "
                f"took {appended:.2f} ms on average, the rest is HTTP and the file projection"
            )
        if "read" in parts:
            status(f"read phase 1: {args.http_requests} GETs")
            r = http_read.get_latency(stack, _READ_ACCOUNT, args.http_requests, 100)
            out["figures"]["get_p50_ms_phase1"] = round(r["p50_ms"], 3)
            out["notes"].append(
                f"read phase 1: source {r['source']}, {r['bytes'] / 1024:.0f} KiB answers, "
                f"{r['offers']} offers, p99 {r['p99_ms']:.2f} ms"
            )
    if "upsert80" in parts:
        status("legacy upsert80: 80 threads on one ~300 KB file, 3 rounds")
        r = http_write.legacy_upsert80(legacy_root, _UPSERT80_ACCOUNT, 3)
        out["figures"]["legacy_upsert80_ms"] = round(r["median_ms"], 1)
    if "read" in parts:
        r = http_read.legacy_read(legacy_root, _READ_ACCOUNT, min(args.http_requests, 500), 20)
        out["figures"]["legacy_get_p50_ms"] = round(r["p50_ms"], 3)


def _phase2(ctx: BenchContext, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from . import http_read
    from .http_stack import Stack, wait_redis_projector

    profile = _profile(args, "phase2")
    with Stack(
        ctx.settings, phase=2, redis_projector=True, relay=True, profile_dir=profile
    ) as stack:
        took = wait_redis_projector(ctx.settings)
        status(f"read phase 2: Redis projector caught up in {took:.1f} s; GETs")
        r = http_read.get_latency(stack, _READ_ACCOUNT, args.http_requests, 100)
        out["figures"]["get_p50_ms_phase2"] = round(r["p50_ms"], 3)
        out["notes"].append(f"read phase 2: source {r['source']}, p99 {r['p99_ms']:.2f} ms")


def _sustained(ctx: BenchContext, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from . import http_sustained

    seconds = ctx.duration(30.0)
    status(f"sustained: {args.http_connections} connections, {seconds:g} s ({_load()})")
    figures, notes = http_sustained.compare(
        ctx,
        seconds,
        args.http_clients,
        args.http_connections,
        _profile(args, "sustained"),
        args.http_sustained_phase,
    )
    out["figures"].update(figures)
    out["notes"] += notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    parts = {p.strip() for p in args.http_only.split(",") if p.strip()}
    if unknown := parts - set(PARTS):
        raise SystemExit(f"--http-only: unknown {sorted(unknown)}; choose from {PARTS}")
    ctx = BenchContext.from_args(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe
    out: dict[str, Any] = {"figures": {}, "ratios": {}, "notes": []}
    fsync_p50, fsync_p99 = fsync_probe(ctx.settings.data_dir)
    out["notes"].append(
        f"at the start: {_load()}; 1 KB append + fsync p50 {fsync_p50:.2f} ms, "
        f"p99 {fsync_p99:.2f} ms in the data dir"
    )
    if parts & {"upsert80", "latency", "read"}:
        _phase1(ctx, args, parts, out)
    if "read" in parts:
        _phase2(ctx, args, out)
    if "sustained" in parts:
        _sustained(ctx, args, out)
    f = out["figures"]
    if "upsert80_ms" in f and "legacy_upsert80_ms" in f:
        out["ratios"]["upsert80_vs_legacy"] = round(f["legacy_upsert80_ms"] / f["upsert80_ms"], 1)
    if "sustained_events_per_s" in f and f.get("bare_endpoint_per_s"):
        ratio = f["sustained_events_per_s"] / f["bare_endpoint_per_s"]
        out["ratios"]["sustained_vs_bare_endpoint"] = round(ratio, 3)
    if "get_p50_ms_phase1" in f and f.get("legacy_get_p50_ms"):
        # DESIGN: phase 1 reads at most 1/3 of the legacy read-and-parse.
        ratio = f["get_p50_ms_phase1"] / f["legacy_get_p50_ms"]
        out["ratios"]["get_phase1_vs_legacy"] = round(ratio, 3)
    out["notes"].append(f"at the end: {_load()}")
    out["figures"] = {k: f[k] for k in FIGURES if k in f}
    return out
