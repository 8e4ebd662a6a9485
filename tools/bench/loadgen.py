"""A lean HTTP/1.1 load generator: raw asyncio protocols, keep-alive, one request in flight.

On a 2-core machine every µs of client CPU is taken from the server it drives,
and httpx costs many times what the request does. Here a connection is an
`asyncio.Protocol` that writes pre-built request bytes and finds the answer's
end by `Content-Length` (uvicorn always sends one for these JSON answers); the
closed loop runs inside `data_received`, with no task or future per request.
Measured against a trivial server: ~12 µs of client CPU per request, 20,000+
requests/s from one process. `run_load` spreads the connections over several
spawned processes (uvloop where installed), each building its requests with a
factory named by "module:function", and counts the answers inside the timed
window (warm-up excluded).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from array import array
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from .workload import run_processes

__all__ = ["Conn", "LoadResult", "connect", "request_bytes", "run_load", "run_loop"]

T = TypeVar("T")
RequestFactory = Callable[[], bytes]  # () -> the next request's bytes


def request_bytes(
    method: str, path: str, key: str, body: bytes | None = None, extra: str = ""
) -> bytes:
    """One complete HTTP/1.1 request (keep-alive is HTTP/1.1's default)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n{extra}"
    if body is None:
        return (head + "\r\n").encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Conn(asyncio.Protocol):
    """One keep-alive connection; `send` writes a request and awaits (status, body)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.need = -1  # total bytes of the answer being read, once its head is in
        self.status = self.body_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.failed(exc or ConnectionError("the server closed the connection"))

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.transport is None or (self.waiter is not None and not self.waiter.done()):
            raise RuntimeError("a connection carries one request at a time")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self.failed(ValueError(f"answer without Content-Length: {head[:200]!r}"))
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
            self.need = end + 4 + length
            self.status = int(buf[9:12])
            self.body_at = end + 4
        if len(buf) >= self.need:
            body = bytes(buf[self.body_at : self.need])
            del buf[: self.need]
            self.need = -1
            self.answered(self.status, body)

    def answered(self, status: int, body: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def failed(self, error: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Looper(Conn):
    """A closed loop on one connection, driven from `data_received` itself: no task and
    no future per request (half the client's CPU per request)."""

    def __init__(self, factory: RequestFactory, tally: _Tally) -> None:
        super().__init__()
        self.factory, self.tally = factory, tally
        self.t0 = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def next(self) -> None:
        assert self.transport is not None
        self.t0 = time.perf_counter()
        if self.t0 >= self.tally.end:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.transport.write(self.factory())

    def answered(self, status: int, body: bytes) -> None:
        self.tally.record(self.t0, time.perf_counter(), status, body)
        self.next()

    def failed(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


class _Tally:
    """What the answers inside the window [begin, end] said."""

    def __init__(self, begin: float, end: float, check_projected: bool) -> None:
        self.begin, self.end, self.check_projected = begin, end, check_projected
        self.latencies = array("d")
        self.counts = {"ok": 0, "failed": 0, "not_projected": 0}
        self.errors: list[str] = []

    def record(self, t0: float, t1: float, status: int, body: bytes) -> None:
        if t0 < self.begin or t1 > self.end:
            return  # warm-up, or answered after the window closed
        self.latencies.append(t1 - t0)
        counts = self.counts
        if status >= 300 or b'"success":true' not in body:
            counts["failed"] += 1
            if len(self.errors) < 3:
                self.errors.append(f"{status} {body[:300]!r}")
        else:
            counts["ok"] += 1
            if self.check_projected and b'"projected":true' not in body:
                counts["not_projected"] += 1


async def connect(host: str, port: int) -> Conn:
    _, conn = await asyncio.get_running_loop().create_connection(Conn, host, port)
    return conn


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop when it is installed (a cheaper client), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


class LoadResult(dict[str, Any]):
    """Totals over the processes: `ok`, `failed`, `not_projected`, `latencies` (s),
    `cpu_s` (the client processes' CPU time, warm-up included), `errors` (a few)."""


async def _drive(params: dict[str, Any], factory: RequestFactory, go_at: float) -> dict[str, Any]:
    begin = go_at + params["warmup"]
    tally = _Tally(begin, begin + params["seconds"], params.get("check_projected", False))
    loop = asyncio.get_running_loop()
    conns: list[_Looper] = []
    cpu = time.process_time()
    try:
        for _ in range(params["connections"]):
            _, conn = await loop.create_connection(
                lambda: _Looper(factory, tally), params["host"], params["port"]
            )
            conns.append(conn)
            conn.next()
        await asyncio.gather(*(c.done for c in conns))
    finally:
        for c in conns:
            c.close()
    cpu = time.process_time() - cpu
    return {
        **tally.counts,
        "cpu_s": cpu,
        "errors": tally.errors,
        "latencies": tally.latencies.tobytes(),
    }


def _load_process(index: int, params: dict[str, Any], wait_for_go: Callable[[], None]) -> Any:
    params = {**params, "index": index}
    module, _, name = params["factory"].partition(":")
    factory: RequestFactory = getattr(importlib.import_module(module), name)(params)
    wait_for_go()  # the factory is built (and may pre-build its requests) before the clock
    return run_loop(_drive(params, factory, time.perf_counter()))


def run_load(params: dict[str, Any], processes: int, connections: int) -> LoadResult:
    """Spread `connections` over `processes` client processes; return the window's totals.

    `params`: host, port, factory ("module:function", called with the process's
    params to give a RequestFactory), seconds, warmup, check_projected.
    """
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    todo = [{**params, "connections": n} for n in shares if n]
    timeout = params["warmup"] + params["seconds"] + 60
    results = run_processes(_load_process, todo, timeout=timeout)
    out = LoadResult(ok=0, failed=0, not_projected=0, cpu_s=0.0, errors=[], latencies=[])
    for r in results:
        for k in ("ok", "failed", "not_projected", "cpu_s"):
            out[k] += r[k]
        out["errors"].extend(r["errors"])
        out["latencies"].extend(array("d", r["latencies"]))
    return out
