"""Sub-scenario `read` of `bench http`: GET of a ~300 KB document, one client.

Timed per request on one keep-alive connection, from writing the request to
having the whole body (the client does not parse it: the server's work is the
figure). Phase 1 reads the file snapshot, phase 2 the Redis projection (after
the Redis projector has caught up); the legacy figure is `LegacyStore.read`
(read the indented file and `json.loads` it) of the same document.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from .http_stack import Stack
from .legacy import LegacyStore
from .legacy_docs import make_document
from .loadgen import connect, request_bytes, run_loop
from .workload import percentile

__all__ = ["get_latency", "legacy_read"]


def get_latency(stack: Stack, account: str, requests: int, warmup: int) -> dict[str, Any]:
    """p50/p99 ms of sequential GET /negotiations/{account}; checks the answer's source."""
    raw = request_bytes("GET", f"/negotiations/{account}", stack.key)

    async def go() -> dict[str, Any]:
        conn = await connect(stack.host, stack.port)
        times: list[float] = []
        size = 0
        try:
            status, body = await conn.send(raw)
            answer = orjson.loads(body)
            if status != 200 or answer.get("created_new") is not False:
                raise RuntimeError(f"read: GET {account}: HTTP {status}: {body[:300]!r}")
            source, offers = answer["source"], len(answer["data"]["trade_offers"])
            for i in range(warmup + requests):
                t0 = time.perf_counter()
                status, body = await conn.send(raw)
                took = time.perf_counter() - t0
                if status != 200:
                    raise RuntimeError(f"read: HTTP {status}: {body[:300]!r}")
                if i >= warmup:
                    times.append(took)
            size = len(body)
        finally:
            conn.close()
        return {"times": times, "bytes": size, "source": source, "offers": offers}

    out = run_loop(go())
    out["p50_ms"] = percentile(out["times"], 50) * 1000
    out["p99_ms"] = percentile(out["times"], 99) * 1000
    return out


def legacy_read(root: Path, account: str, requests: int, warmup: int) -> dict[str, Any]:
    """p50 ms of the legacy GET (read the ~300 KB indented file, json.loads) of the same doc."""
    store = LegacyStore(root)
    size = store.seed([account], make_document(account))
    times = []
    for i in range(warmup + requests):
        t0 = time.perf_counter()
        store.read(account)
        took = time.perf_counter() - t0
        if i >= warmup:
            times.append(took)
    return {"p50_ms": percentile(times, 50) * 1000, "bytes": size}
