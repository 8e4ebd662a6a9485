"""The tradelog processes an HTTP scenario drives, started and always stopped.

`Stack` runs `tradelog serve` and `tradelog project file` (and, when asked,
`tradelog project redis` and `tradelog relay`) as child processes of this one,
each in its own session, configured only through TRADELOG_* variables built
from the bench's settings, with an API key of the bench's own. Their output
goes to log files in the data dir, whose tail is shown if one dies.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import redis
from prometheus_client.parser import text_string_to_metric_families

from eventlog.keys import Keys
from eventlog.settings import Settings

from ..cmd_serve import settings_env
from .http_cpu import tree_cpu_seconds
from .redis_server import free_port

__all__ = ["Stack", "bench_env", "wait_redis_projector"]

_HEALTH_DEADLINE_S = 30.0
_STOP_GRACE_S = 10.0
_CLI = [sys.executable, "-m", "tools.cli"]


def bench_env(settings: Settings, key: str, **overrides: str) -> dict[str, str]:
    """The environment of a tradelog child: ours, minus any TRADELOG_* but the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOG_")}
    env.update(settings_env(settings))
    env["TRADELOG_API_KEYS"] = key
    env.update({f"TRADELOG_{k.upper()}": v for k, v in overrides.items()})
    return env


class Stack:
    """The API on `port` plus the projectors; use as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        phase: int = 1,
        workers: int = 1,
        redis_projector: bool = False,
        relay: bool = False,
        key: str | None = None,
        profile_dir: Path | None = None,
    ) -> None:
        """`profile_dir`: run every child under cProfile, writing `<name>.prof` there
        when it stops (SIGTERM lets each finish normally)."""
        self.settings = settings
        self.key = key or secrets.token_hex(16)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.env = bench_env(settings, self.key, phase=str(phase))
        self.logs = settings.data_dir / "bench-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self.profile_dir = profile_dir
        self.parts = [("project-file", ["project", "file"])]
        if redis_projector:
            self.parts.append(("project-redis", ["project", "redis"]))
        if relay:
            self.parts.append(("relay", ["relay"]))
        serve = ["serve", "--port", str(self.port), "--workers", str(workers)]
        self.parts.append(("serve", serve))

    def start(self, name: str, argv: list[str]) -> None:
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        cli = _CLI
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            prof = self.profile_dir / f"{name}.prof"
            cli = [sys.executable, "-m", "cProfile", "-o", str(prof), *_CLI[1:]]
        proc = subprocess.Popen(
            [*cli, *argv],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: uvicorn's workers are stopped with it
        )
        self.children[name] = (proc, out)

    def __enter__(self) -> Stack:
        try:
            for name, argv in self.parts:
                self.start(name, argv)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, name: str, chars: int = 3000) -> str:
        path: Path = self.logs / f"{name}.log"
        with contextlib.suppress(OSError):
            return path.read_text(errors="replace")[-chars:]
        return ""

    def check_alive(self) -> None:
        for name, (proc, _) in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def wait_healthy(self) -> None:
        """GET /health until it answers 200 (or a child dies, or the deadline passes)."""
        deadline = time.monotonic() + _HEALTH_DEADLINE_S
        url = f"http://{self.host}:{self.port}/health"
        while True:
            self.check_alive()
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=0.5) as r:
                if r.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"tradelog serve: no /health within {_HEALTH_DEADLINE_S:g}s")
            time.sleep(0.05)

    def append_seconds(self) -> tuple[float, int]:
        """The API's `tradelog_append_seconds` so far: total seconds and count (every type),
        the writes' wait for their durable append, as its /metrics reports it."""
        req = urllib.request.Request(
            f"http://{self.host}:{self.port}/metrics", headers={"X-API-Key": self.key}
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            text = answer.read().decode()
        total, count = 0.0, 0
        for family in text_string_to_metric_families(text):
            if family.name == "tradelog_append_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_sum"):
                        total += sample.value
                    elif sample.name.endswith("_count"):
                        count += int(sample.value)
        return total, count

    def append_ms(self, before: tuple[float, int]) -> float:
        """The writes' mean durable-append time since `before` (an `append_seconds`), in
        ms, over every worker (/metrics adds them up)."""
        total, count = self.append_seconds()
        return (total - before[0]) / max(1, count - before[1]) * 1000

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each child (with uvicorn's workers) has used so far."""
        return tree_cpu_seconds({name: proc.pid for name, (proc, _) in self.children.items()})

    def stop(self) -> None:
        """SIGTERM every child's group, wait, then SIGKILL what is left.

        Under cProfile, SIGINT: uvicorn re-raises the signal that stopped it once it has
        shut down, and only SIGINT (a KeyboardInterrupt) lets cProfile write its file."""
        sig = signal.SIGINT if self.profile_dir is not None else signal.SIGTERM
        for proc, _ in self.children.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + _STOP_GRACE_S
        for proc, out in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind in its group
            out.close()
        self.children.clear()


def wait_redis_projector(settings: Settings, deadline_s: float = 90.0) -> float:
    """Wait until the Redis projector's progress reaches every stream's top; return seconds."""
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.key_prefix)
    started = time.monotonic()
    try:
        while True:
            pipe = client.pipeline(transaction=False)
            for p in range(settings.partitions):
                pipe.xrevrange(keys.log(p), count=1)
            pipe.hgetall(keys.progress("redis"))
            *tops, progress = pipe.execute()
            behind = 0
            for p, top in enumerate(tops):
                next_offset = int(top[0][0].split(b"-")[1]) if top else 0
                behind += max(0, next_offset - int(progress.get(str(p).encode(), 0)))
            if behind == 0:
                return time.monotonic() - started
            if time.monotonic() - started > deadline_s:
                msg = f"the Redis projector is {behind} events behind after {deadline_s:g}s"
                raise RuntimeError(msg)
            time.sleep(0.05)
    finally:
        client.close()
