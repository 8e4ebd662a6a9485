"""Sub-scenarios `upsert80` and `latency` of `bench http`, and the legacy 80 beside them.

`upsert80`: 80 keep-alive connections, opened before the clock starts, each
send one atomic upsert of a fresh offer to the same pre-seeded account at
once; the wall time runs until the 80th answer, and every answer must say
`success` and `projected` (read-your-writes through the file projection).
The legacy figure is the same 80 upserts as 80 threads calling
`LegacyStore.upsert_offer` on one account's ~300 KB indented file.

`latency`: one connection, sequential upserts, after a warm-up.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from .http_stack import Stack
from .legacy import LegacyStore
from .legacy_docs import make_document, make_offer, steam_ids
from .loadgen import Conn, connect, request_bytes, run_loop
from .workload import percentile

__all__ = ["latency", "legacy_upsert80", "seed", "upsert80"]

FRIEND = steam_ids(1, start=76561198123456789)[0]


def _upsert(stack: Stack, account: str, offer: dict[str, Any]) -> bytes:
    path = f"/negotiations/{account}/atomic-upsert-trade-offer"
    return request_bytes("POST", path, stack.key, orjson.dumps({"trade_offer_data": offer}))


def _offers(rng: random.Random, first_id: int, count: int) -> list[dict[str, Any]]:
    return [make_offer(rng, first_id + i, FRIEND) for i in range(count)]


def _checked(status: int, body: bytes, what: str) -> dict[str, Any]:
    answer: dict[str, Any] = orjson.loads(body)
    if status >= 300 or answer.get("success") is not True:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:500]!r}")
    return answer


def seed(stack: Stack, accounts: list[str]) -> int:
    """POST each account a realistic document (~300 KB indented); return its JSON size."""

    async def go() -> int:
        conn = await connect(stack.host, stack.port)
        try:
            for account in accounts:
                body = orjson.dumps(make_document(account))
                raw = request_bytes("POST", f"/negotiations/{account}", stack.key, body)
                answer = _checked(*await conn.send(raw), f"seeding {account}")
                if answer.get("projected") is not True:
                    raise RuntimeError(f"seeding {account}: not projected: {answer}")
            return len(body)
        finally:
            conn.close()

    return run_loop(go())


async def _round(conns: list[Conn], raws: list[bytes]) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    replies = await asyncio.gather(*(c.send(r) for c, r in zip(conns, raws, strict=True)))
    wall = time.perf_counter() - start
    return wall, [_checked(status, body, "upsert80") for status, body in replies]


def upsert80(stack: Stack, account: str, rounds: int, n: int = 80) -> dict[str, Any]:
    """Median wall ms of `rounds` rounds (after one untimed) of `n` concurrent upserts."""
    rng = random.Random(80)

    async def go() -> dict[str, Any]:
        conns = [await connect(stack.host, stack.port) for _ in range(n)]
        walls: list[float] = []
        projected = answered = 0
        try:
            for r in range(rounds + 1):
                offers = _offers(rng, 30_000_000_000 + r * 1000, n)
                raws = [_upsert(stack, account, o) for o in offers]
                wall, answers = await _round(conns, raws)
                if any(a.get("operation") != "added" for a in answers):
                    raise RuntimeError("upsert80: a fresh offer was not 'added'")
                if r == 0:
                    continue  # untimed: connections and caches warm up
                walls.append(wall)
                answered += len(answers)
                projected += sum(a.get("projected") is True for a in answers)
        finally:
            for c in conns:
                c.close()
        return {"walls": walls, "answered": answered, "projected": projected}

    out = run_loop(go())
    out["median_ms"] = statistics.median(out["walls"]) * 1000
    return out


def _legacy_one(
    store: LegacyStore,
    account: str,
    offer: dict[str, Any],
    gate: threading.Barrier,
    errors: list[BaseException],
) -> None:
    gate.wait()
    try:
        store.upsert_offer(account, offer)
    except BaseException as e:  # reported by the caller: a failed legacy run is no baseline
        errors.append(e)


def legacy_upsert80(root: Path, account: str, rounds: int, n: int = 80) -> dict[str, Any]:
    """The legacy 80: `n` threads upserting into one account's file at once, per round."""
    store = LegacyStore(root)
    store.seed([account], make_document(account))
    rng = random.Random(81)
    walls = []
    for r in range(rounds):
        offers = _offers(rng, 40_000_000_000 + r * 1000, n)
        gate = threading.Barrier(n + 1)
        errors: list[BaseException] = []

        threads = [
            threading.Thread(target=_legacy_one, args=(store, account, o, gate, errors))
            for o in offers
        ]
        for t in threads:
            t.start()
        gate.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        walls.append(time.perf_counter() - start)
        if errors:
            raise RuntimeError(f"legacy upsert80 failed: {errors[0]!r}")
    return {"walls": walls, "median_ms": statistics.median(walls) * 1000}


def latency(stack: Stack, accounts: list[str], requests: int, warmup: int) -> dict[str, Any]:
    """p50/p99 ms of sequential upserts over one keep-alive connection (new offers and
    state changes, round robin over `accounts`)."""
    rng = random.Random(7)
    offers = _offers(rng, 50_000_000_000, 64)
    raws = []
    for i in range(warmup + requests):
        account = accounts[i % len(accounts)]
        if i % 2:
            offer = {"trade_offer_id": offers[i % 64]["trade_offer_id"], "state": "Accepted"}
        else:
            offer = {**offers[i % 64], "trade_offer_id": str(50_000_000_000 + i)}
        raws.append(_upsert(stack, account, offer))

    async def go() -> dict[str, Any]:
        conn = await connect(stack.host, stack.port)
        times: list[float] = []
        not_projected = 0
        try:
            for i, raw in enumerate(raws):
                t0 = time.perf_counter()
                status, body = await conn.send(raw)
                took = time.perf_counter() - t0
                if status >= 300 or b'"success":true' not in body:
                    raise RuntimeError(f"latency: HTTP {status}: {body[:500]!r}")
                if i >= warmup:
                    times.append(took)
                    not_projected += b'"projected":true' not in body
        finally:
            conn.close()
        return {"times": times, "not_projected": not_projected}

    out = run_loop(go())
    out["p50_ms"] = percentile(out["times"], 50) * 1000
    out["p99_ms"] = percentile(out["times"], 99) * 1000
    return out
