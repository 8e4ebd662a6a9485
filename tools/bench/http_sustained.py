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
from typing import Any

import orjson

from . import baselines
from .http_stack import Stack
from .legacy import make_offer, steam_ids
from .loadgen import LoadResult, RequestFactory, request_bytes, run_load
from .workload import OfferStream, percentile

__all__ = ["bare_requests", "run_bare", "run_tradelog", "summarize", "tradelog_requests"]

_FRIENDS = steam_ids(64, start=76561198123456789)
_POOL = 32_768  # requests built per client process


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


def _params(host: str, port: int, seconds: float, warmup: float) -> dict[str, Any]:
    return {"host": host, "port": port, "seconds": seconds, "warmup": warmup}


def run_tradelog(
    stack: Stack, seconds: float, warmup: float, processes: int, connections: int
) -> LoadResult:
    params = _params(stack.host, stack.port, seconds, warmup)
    params.update(factory=f"{__name__}:tradelog_requests", key=stack.key, check_projected=True)
    return run_load(params, processes, connections)


def run_bare(
    redis_url: str, key: str, seconds: float, warmup: float, processes: int, connections: int
) -> LoadResult:
    with baselines.bare_xadd_server(redis_url, key, workers=2) as base:
        host, port = base.removeprefix("http://").split(":")
        params = _params(host, int(port), seconds, warmup)
        params["factory"] = f"{__name__}:bare_requests"
        return run_load(params, processes, connections)


def summarize(result: LoadResult, seconds: float) -> dict[str, Any]:
    lat = result["latencies"]
    return {
        "per_s": result["ok"] / seconds,
        "ok": result["ok"],
        "failed": result["failed"],
        "not_projected": result["not_projected"],
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "client_cpu_us": result["cpu_s"] / max(1, result["ok"]) * 1e6,
        "errors": result["errors"][:3],
    }
