"""Ceilings: what the parts under tradelog manage on their own, measured in the same run.

Scenario ratios divide tradelog's figure by one of these, so a noisy machine
moves both sides together. Each runs one redis-py client from this process,
pipelining batches of 100 without MULTI (as a writer that batches would), and
returns operations per second over roughly `seconds` of work.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import redis

from .redis_server import free_port

__all__ = ["bare_xadd_server", "raw_evalsha_per_s", "raw_script_per_s", "raw_xadd_per_s"]

_BATCH = 100
_RESET_EVERY = 100  # batches; keeps the stream at most ~10k entries (~10 MB) in Redis

# One HSET and nothing else: the floor of any per-event projection script.
_HSET_SCRIPT = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\nreturn 1\n"


def raw_xadd_per_s(
    client: redis.Redis,
    key: str,
    entries: Sequence[Sequence[bytes | str]],
    seconds: float = 2.0,
    batch: int = _BATCH,
) -> float:
    """Pipelined XADD of `entries` (flat field/value lists, cycled) to `key`.

    Building and sending the pipelines is timed (a writer pays for both); the
    stream is deleted every `_RESET_EVERY` batches, untimed, so a fast run does
    not fill Redis's memory.
    """
    if not entries:
        raise ValueError("raw_xadd_per_s needs at least one entry")
    # redis-py's xadd takes a mapping: build them once, outside the clock.
    mappings = [dict(zip(e[::2], e[1::2], strict=True)) for e in entries]
    client.delete(key)
    done = 0
    spent = 0.0
    i = 0
    try:
        while spent < seconds:
            start = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for _ in range(batch):
                pipe.xadd(key, mappings[i % len(mappings)])  # type: ignore[arg-type]
                i += 1
            pipe.execute()
            spent += time.perf_counter() - start
            done += batch
            if done % (batch * _RESET_EVERY) == 0:
                client.delete(key)
    finally:
        client.delete(key)
    return done / spent


def raw_evalsha_per_s(
    client: redis.Redis,
    key_prefix: str,
    value: bytes | str,
    seconds: float = 2.0,
    batch: int = _BATCH,
    keys: int = 1000,
) -> float:
    """Pipelined EVALSHA of a one-HSET script over `keys` hashes under `key_prefix`."""
    sha = client.script_load(_HSET_SCRIPT)
    names = [f"{key_prefix}:{{{n}}}" for n in range(keys)]
    done = 0
    spent = 0.0
    try:
        while spent < seconds:
            start = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for j in range(batch):
                n = done + j
                pipe.evalsha(sha, 1, names[n % keys], str(n % 997), value)
            pipe.execute()
            spent += time.perf_counter() - start
            done += batch
    finally:
        client.delete(*names)
    return done / spent


def raw_script_per_s(
    client: redis.Redis,
    script: str,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    reset: Callable[[], None],
    seconds: float = 2.0,
    batch: int = _BATCH,
    clear: Callable[[], None] | None = None,
) -> float:
    """Pipelined EVALSHA of `script`, one prepared call (KEYS, ARGV) each, in order.

    The calls are made ready outside the clock; only building and sending the
    pipelines is timed. They are cycled, with `reset` (untimed) clearing what they
    wrote before each pass, so a compare-and-set script finds what it expects; each
    must answer {1, …} (applied), or the figure would count work not done.
    `clear` (default: `reset`) removes what they wrote at the end.
    """
    if not calls:
        raise ValueError("raw_script_per_s needs at least one call")
    sha = client.script_load(script)
    done = 0
    spent = 0.0
    while spent < seconds:
        reset()
        for at in range(0, len(calls), batch):
            start = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for keys, args in calls[at : at + batch]:
                pipe.evalsha(sha, len(keys), *keys, *args)
            replies = pipe.execute()
            spent += time.perf_counter() - start
            refused = [r for r in replies if not isinstance(r, list) or r[0] != 1]
            if refused:  # a call that did not apply would make the ceiling look higher
                raise RuntimeError(f"a raw script call did not apply: {refused[0]!r}")
            done += len(replies)
            if spent >= seconds:
                break
    (clear or reset)()
    return done / spent


@contextlib.contextmanager
def bare_xadd_server(redis_url: str, key: str, workers: int = 1) -> Iterator[str]:
    """Serve `bare_app` (POST /xadd: one XADD per request) with uvicorn; yield its base URL.

    The ceiling HTTP scenarios compare with: same server stack as `tradelog
    serve`, none of tradelog's work. Stopped (SIGTERM, then SIGKILL) on exit.
    """
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "tools.bench.bare_app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_XADD_KEY": key}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the bare XADD endpoint did not come up within 20s")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
