"""Sub-scenario `sustained` of `bench http`: 64 connections of mixed writes, 2 workers.

The mix, over 4,096 accounts per client process: 80% atomic upserts (half new
offers with items, half state changes of offers added earlier: OfferStream),
10% friend PUTs, 10% saves of small documents. Beside it, in the same run and
from the same load generator for as long: the bare Starlette endpoint doing
one XADD per request, with the same bodies (the ceiling of the HTTP stack plus
one Redis round trip).
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path
from typing import Any

import orjson

from . import baselines
from .common import BenchContext, status
from .http_cpu import find_pids, redis_cpu_seconds, tree_cpu_seconds
from .http_stack import Stack
from .legacy_docs import make_offer, steam_ids
from .loadgen import LoadResult, RequestFactory, request_bytes, run_load
from .workload import OfferStream, percentile

__all__ = ["bare_requests", "compare", "run_bare", "run_tradelog", "tradelog_requests"]

_FRIENDS = steam_ids(64, start=76561198123456789)
_POOL = 32_768  # requests built per client process
_WARMUP_S = 2.0


def _friend_record(rng: random.Random, friend: str, n: int) -> dict[str, Any]:
    return {
        "friend_steam_id": friend,
        "state": rng.choice(("awaiting_reply", "negotiating", "accepted", "declined")),
        "followUpCount": n % 4,
        "language": {"code": "en", "confidence": 0.9},
        "messages": [
            {"from": "us" if i % 2 else "them", "text": "trade?", "timestamp": 1754990000 + i}
            for i in range(1 + n % 4)
        ],
    }


def _small_doc(rng: random.Random, account: str, n: int) -> dict[str, Any]:
    friend = rng.choice(_FRIENDS)
    return {
        "account_steam_id": account,
        "account_username": f"bot{n % 100:02d}",
        "our_inventory": None,
        "trade_offers": [make_offer(rng, 60_000_000_000 + n * 4 + i, friend) for i in range(2)],
        "negotiations": {friend: _friend_record(rng, friend, n)},
    }


def _bodies(params: dict[str, Any]) -> Any:
    """Endless (method, path, body) of the mix, seeded by the client process's index."""
    index = params["index"]
    rng = random.Random(1000 + index)
    stream = OfferStream(seed=100 + index)
    n = 0
    while True:
        n += 1
        roll = rng.random()
        if roll < 0.8:
            account, data = stream.next()
            yield (
                "POST",
                f"/negotiations/{account}/atomic-upsert-trade-offer",
                orjson.dumps({"trade_offer_data": data["offer"]}),
            )
        elif roll < 0.9:
            account = stream.accounts[rng.randrange(len(stream.accounts))]
            friend = rng.choice(_FRIENDS)
            body = orjson.dumps(_friend_record(rng, friend, n))
            yield "PUT", f"/negotiations/{account}/friend/{friend}", body
        else:
            account = stream.accounts[rng.randrange(len(stream.accounts))]
            yield "POST", f"/negotiations/{account}", orjson.dumps(_small_doc(rng, account, n))


def _cycle(raws: list[bytes]) -> RequestFactory:
    """Requests built before the clock starts, served in turn (a few µs of client CPU
    saved per request, which on 2 cores the server would otherwise lose)."""
    at = [-1]
    count = len(raws)

    def next_request() -> bytes:
        at[0] = i = (at[0] + 1) % count
        return raws[i]

    return next_request


def tradelog_requests(params: dict[str, Any]) -> RequestFactory:
    """The mix as tradelog requests (runs in a client process). After `_POOL` requests
    the same ones come again: upserts of known offers, friend PUTs, saves."""
    key = params["key"]
    bodies = itertools.islice(_bodies(params), _POOL)
    return _cycle([request_bytes(method, path, key, body) for method, path, body in bodies])


def bare_requests(params: dict[str, Any]) -> RequestFactory:
    """The same bodies, each POSTed to the bare endpoint's /xadd."""
    bodies = itertools.islice(_bodies(params), _POOL)
    return _cycle([request_bytes("POST", "/xadd", "-", body) for _, _, body in bodies])


def _params(host: str, port: int, seconds: float) -> dict[str, Any]:
    return {"host": host, "port": port, "seconds": seconds, "warmup": _WARMUP_S}


def run_tradelog(stack: Stack, seconds: float, processes: int, connections: int) -> LoadResult:
    params = _params(stack.host, stack.port, seconds)
    params.update(factory=f"{__name__}:tradelog_requests", key=stack.key, check_projected=True)
    return run_load(params, processes, connections)


def run_bare(
    redis_url: str, key: str, seconds: float, processes: int, connections: int
) -> tuple[LoadResult, float]:
    """The load on the bare endpoint; and the cores its uvicorn (all workers) used."""
    with baselines.bare_xadd_server(redis_url, key, workers=2) as base:
        host, port = base.removeprefix("http://").split(":")
        params = _params(host, int(port), seconds)
        params["factory"] = f"{__name__}:bare_requests"
        roots = {str(pid): pid for pid in find_pids(f"--port\0{port}\0")}
        cpu0, t0 = sum(tree_cpu_seconds(roots).values()), time.perf_counter()
        result = run_load(params, processes, connections)
        cores = (sum(tree_cpu_seconds(roots).values()) - cpu0) / (time.perf_counter() - t0)
        return result, cores


def _measured(
    stack: Stack, seconds: float, processes: int, connections: int
) -> tuple[LoadResult, dict[str, float]]:
    """The load on `stack`, and the CPU cores each part of it used meanwhile."""
    url = stack.settings.redis_url
    appended0 = stack.append_seconds()
    cpu0, redis0, t0 = stack.cpu_seconds(), redis_cpu_seconds(url), time.perf_counter()
    result = run_tradelog(stack, seconds, processes, connections)
    wall = time.perf_counter() - t0
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in stack.cpu_seconds().items()}
    cpu["redis"] = redis_cpu_seconds(url) - redis0
    cpu["clients"] = result["cpu_s"]
    result["append_ms"] = stack.append_ms(appended0)
    return result, {k: v / wall for k, v in cpu.items()}


def _note(name: str, result: LoadResult, seconds: float) -> tuple[float, str]:
    lat = result["latencies"]
    per_s = result["ok"] / seconds
    return per_s, (
        f"{name}: {result['ok']} ok, {result['failed']} failed, "
        f"{result['not_projected']} not projected, p50 {percentile(lat, 50) * 1000:.2f} ms, "
        f"p99 {percentile(lat, 99) * 1000:.2f} ms, client CPU "
        f"{result['cpu_s'] / max(1, result['ok']) * 1e6:.0f} µs per answer "
        f"{result['errors'][:2] or ''}"
    )


def compare(
    ctx: BenchContext,
    seconds: float,
    processes: int,
    connections: int,
    profile: Path | None,
    phase: int = 1,
) -> tuple[dict[str, Any], list[str]]:
    """tradelog (2 workers; 1 under cProfile) beside the bare endpoint, same load.

    Phase 2 (a diagnostic: the default is 1) runs the Redis projector and the relay too,
    and writes wait for the Redis projection instead of the file snapshots."""
    workers = 1 if profile else 2
    stack = Stack(ctx.settings, phase=phase, workers=workers, redis_projector=phase > 1)
    stack.profile_dir = profile
    with stack:
        mine, cores = _measured(stack, seconds, processes, connections)
    status(f"bare Starlette+XADD endpoint, 2 workers, same load, {seconds:g} s")
    bare, bare_cores = run_bare(
        ctx.settings.redis_url, ctx.key("bare-xadd"), seconds, processes, connections
    )
    per_s, note = _note("sustained", mine, seconds)
    bare_per_s, bare_note = _note("bare", bare, seconds)
    rate = max(1.0, per_s)
    used = ", ".join(
        f"{k} {v:.2f} ({v / rate * 1e6:.0f} µs/event)"
        for k, v in sorted(cores.items(), key=lambda kv: -kv[1])
    )
    cpu_us = sum(cores.values()) / rate * 1e6
    notes = [
        note,
        f"sustained: the durable append took {mine['append_ms']:.2f} ms on average (both "
        "workers, from /metrics); the rest of the latency is HTTP and the file projection",
        bare_note,
        f"sustained: CPU cores used: {used}; {cpu_us:.0f} µs per event in all",
        f"bare: its uvicorn used {bare_cores:.2f} cores, "
        f"{bare_cores / max(1.0, bare_per_s) * 1e6:.0f} µs per request",
    ]
    figures = {"sustained_events_per_s": round(per_s), "bare_endpoint_per_s": round(bare_per_s)}
    return figures, notes
