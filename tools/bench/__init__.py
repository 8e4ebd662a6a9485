"""`tradelog bench SCENARIO`: measure tradelog beside its references, in one run.

A scenario is a module in this package with `run(args) -> dict` returning
`{"figures": {...}, "ratios": {...}, "notes": [...]}` (notes optional) and,
optionally, `add_arguments(parser)` for its own flags. Adding one is a module
and one line in SCENARIOS. Keep imports beyond eventlog's own (uvicorn,
httpx, ...) inside `run`: every `tradelog` invocation imports the scenario
modules to build `--help`.

The harness gives each run a private redis-server (unless `--redis-url`) and a
temp data dir (unless `--data-dir`), cleans up after it, and prints a table,
or with `--json` exactly one JSON object on stdout:
`{"scenario": ..., "figures": {...}, "ratios": {...}}`. Without a scenario it
runs every one in turn, each on its own Redis and data dir (or all on the ones
given), and prints their tables (with `--json`, one such object per line).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import redis
from rich.console import Console
from rich.table import Table

from .redis_server import private_redis

__all__ = ["ALIASES", "SCENARIOS", "register", "run"]

# Scenario name -> module. One line per scenario.
SCENARIOS: dict[str, str] = {
    "append": "tools.bench.append",
    "http": "tools.bench.http",
    "memory": "tools.bench.memory",
    "project": "tools.bench.project",
    "replay": "tools.bench.replay",
    "scale": "tools.bench.scale",
}

# DESIGN's table names `bench http`'s sub-scenarios as scenarios of their own: each is
# `bench http --http-only NAME`, reported under the name asked for.
ALIASES: dict[str, str] = {part: "http" for part in ("latency", "read", "sustained", "upsert80")}


def _scenario(name: str) -> ModuleType:
    return importlib.import_module(SCENARIOS[name])


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "bench",
        parents=[parent],
        help="measure a scenario against its references (raw Redis, the legacy scheme)",
        description=(
            "Runs one scenario (or, with none named, every one in turn) against "
            "tradelog and its references in the same run. "
            "Uses a private redis-server and a temp data dir unless --redis-url / "
            "--data-dir are given (then the bench appends to that log and Redis, "
            "under a fresh key prefix unless --key-prefix)."
        ),
    )
    p.add_argument(
        "scenario",
        nargs="?",
        choices=sorted([*SCENARIOS, *ALIASES]),
        help=(
            "what to measure (default: every scenario, one after another); "
            f"{', '.join(sorted(ALIASES))} are parts of http, run alone"
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds of timed load (scenario default)"
    )
    for name in sorted(SCENARIOS):
        add = getattr(_scenario(name), "add_arguments", None)
        if add is not None:
            add(p)
    p.set_defaults(func=run)


@contextlib.contextmanager
def _data_dir(given: str | None) -> Iterator[Path]:
    if given:
        yield Path(given)
        return
    tmp = tempfile.mkdtemp(prefix="tradelog-bench-")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _redis(given: str | None, prefix: str, ours: bool) -> Iterator[str]:
    if not given:
        with private_redis() as url:
            yield url
        return
    try:
        yield given
    finally:
        if ours:  # someone else's Redis: remove what this run added under its own prefix
            _unlink_prefix(given, prefix)


def _unlink_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.unlink(key)
    finally:
        client.close()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(name: str, result: dict[str, Any]) -> None:
    table = Table(title=f"tradelog bench {name}", header_style="bold")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("value", justify="right")
    for kind in ("figures", "ratios"):
        table.add_section()
        for key, value in result[kind].items():
            table.add_row(kind[:-1], key, _fmt(value))
    console = Console()
    console.print(table)
    for note in result.get("notes", ()):
        console.print(f"  note: {note}", highlight=False)


def run(args: argparse.Namespace) -> int:
    for name in [args.scenario] if args.scenario else list(SCENARIOS):
        if name in ALIASES:
            args.http_only = name
        result = _measure(args, ALIASES.get(name, name))
        if args.json:
            for note in result.get("notes", ()):
                print(f"bench note: {note}", file=sys.stderr)
            out = {"scenario": name, "figures": result["figures"], "ratios": result["ratios"]}
            sys.stdout.write(orjson.dumps(out).decode() + "\n")
            sys.stdout.flush()
        else:
            _table(name, result)
    return 0


def _measure(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """One scenario's result, on its own Redis and data dir (unless given)."""
    url_given = args.setting_redis_url
    # On a Redis of someone else's, work under a fresh prefix so nothing there is read
    # or overwritten, and remove it afterwards; a private Redis gets the usual names.
    ours = not args.setting_key_prefix and bool(url_given)
    prefix = args.setting_key_prefix or (
        f"tradelog-bench-{uuid.uuid4().hex[:8]}" if url_given else "negotiation"
    )
    with (
        _data_dir(args.setting_data_dir) as data_dir,
        _redis(url_given, prefix, ours) as url,
    ):
        args.bench_data_dir, args.bench_redis_url, args.bench_key_prefix = data_dir, url, prefix
        result: dict[str, Any] = _scenario(name).run(args)
    return result
