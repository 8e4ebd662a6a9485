"""The machine under a run: per-process-tree CPU time from /proc, Redis's, fsync's cost.

A figure on a shared 2-core machine means little without knowing whether the
system under test was short of CPU or waiting; these let a scenario report the
cores each part used while it ran (Linux only: elsewhere they report nothing).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import redis

__all__ = ["find_pids", "fsync_probe", "redis_cpu_seconds", "tree_cpu_seconds"]


def _scan() -> tuple[dict[int, int], dict[int, float]]:
    """Every process's parent and CPU seconds (user + system) so far."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                pid = int(name)
                parents[pid] = int(fields[1])  # fields from "state" on: state, ppid, ...
                cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return parents, cpu


def tree_cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its live descendants."""
    parents, cpu = _scan()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    out: dict[str, float] = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += cpu.get(pid, 0.0)
            todo += children.get(pid, ())
        out[name] = total
    return out


def find_pids(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (ours: the bare endpoint's uvicorn)."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{name}/cmdline", "rb") as f:
                    if needle.encode() in f.read():
                        found.append(int(name))
    return found


def redis_cpu_seconds(url: str) -> float:
    """The Redis server's CPU seconds so far (INFO cpu)."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def fsync_probe(directory: Path, count: int = 50) -> tuple[float, float]:
    """p50 and p99 ms of appending 1 KB to a file in `directory` and fsyncing it: what one
    durable append costs on this disk right now (DESIGN measured ~0.2 ms on a quiet one)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".fsync-probe-{os.getpid()}"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * 1024)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return times[len(times) // 2] * 1000, times[min(len(times) - 1, len(times) * 99 // 100)] * 1000
