"""A private, throw-away redis-server for one bench run.

The bench must never touch the shared Redis on 6379 (other engineers' state
and their test runs live there), and its figures should not depend on what
else that server holds. So, unless `--redis-url` names one, each run starts
Debian's redis-server on a free port with persistence off (RDB snapshots and
the AOF would add disk work no scenario asks for) in a temp dir, and stops it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

__all__ = ["REDIS_SERVER", "free_port", "private_redis"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
_START_DEADLINE_S = 10.0
_STOP_DEADLINE_S = 5.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, logfile: Path) -> None:
    deadline = time.monotonic() + _START_DEADLINE_S
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
    try:
        while True:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{tail}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING within {_START_DEADLINE_S}s")
            time.sleep(0.02)
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: with persistence off redis-server exits at once
    try:
        proc.wait(timeout=_STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_STOP_DEADLINE_S)


@contextlib.contextmanager
def private_redis(attempts: int = 3) -> Iterator[str]:
    """Start a redis-server of our own; yield its URL; stop it and remove its dir."""
    with tempfile.TemporaryDirectory(prefix="tradelog-bench-redis-") as tmp:
        logfile = Path(tmp) / "redis.log"
        for attempt in range(attempts):
            # Another process may take the port between our probe and redis's bind:
            # then redis exits at once and we try another port.
            port = free_port()
            url = f"redis://127.0.0.1:{port}/0"
            argv = [
                REDIS_SERVER,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", tmp,
                "--daemonize", "no",
                "--logfile", str(logfile),
            ]  # fmt: skip
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            try:
                _wait_ready(proc, url, logfile)
            except RuntimeError:
                _stop(proc)
                if attempt == attempts - 1:
                    raise
                continue
            try:
                yield url
            finally:
                _stop(proc)
            return
