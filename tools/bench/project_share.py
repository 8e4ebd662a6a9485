"""Projector processes for the bench: started, lined up, timed, and their memory read.

A child is `python -m tools.bench.project_share I N BATCH [PROJECTION]` with the
settings in the environment: it builds the projector as `tradelog project
PROJECTION` does (`redis`, the default: share I of N of the partitions; `file`:
the one file projector), says `ready`, waits for a line on stdin (so only the
catch-up is timed, not the start), catches up, and prints `{"events", "cpu",
"rss_kb", "hwm_kb"}` as JSON: its CPU seconds, and its resident set now and at
its peak (VmRSS and VmHWM of /proc/self/status, 0 where there is none).

`run_shares` in the parent starts N children, waits until all are ready, says
`go` to all at once, and returns their answers, the wall time until the last, and
the Redis server's CPU seconds meanwhile.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from typing import Any, NamedTuple

import orjson

from eventlog.settings import Settings

from .http_cpu import redis_cpu_seconds

__all__ = ["Shares", "memory_kb", "run_shares"]


class Shares(NamedTuple):
    results: list[dict[str, Any]]  # each child's answer
    wall: float  # from "go" to the last answer
    redis_cpu: float  # the Redis server's CPU seconds meanwhile


def memory_kb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM of a live process, in kB (empty off Linux)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def run_shares(settings: Settings, processes: int, projection: str = "redis") -> Shares:
    """Catch `projection` up in `processes` children started together (see above)."""
    from ..cmd_project import DEFAULT_BATCH
    from ..cmd_serve import child_env

    env = child_env(settings)
    argv = [sys.executable, "-m", "tools.bench.project_share"]
    batch = str(DEFAULT_BATCH[projection])
    shares = [
        subprocess.Popen(
            [*argv, str(i), str(processes), batch, projection],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for share in shares:
            said = share.stdout.readline().strip() if share.stdout else ""
            if said != "ready":
                raise RuntimeError(f"a projector process did not start (it said {said!r})")
        redis0, start = redis_cpu_seconds(settings.redis_url), time.perf_counter()
        for share in shares:
            if share.stdin is not None:
                share.stdin.write("go\n")
                share.stdin.flush()
        results = [orjson.loads(share.communicate()[0]) for share in shares]
        wall = time.perf_counter() - start
    finally:
        for share in shares:
            if share.poll() is None:
                share.kill()
                share.wait()
    if any(share.returncode for share in shares):
        raise RuntimeError(f"a {projection} projector process failed (its error is above)")
    return Shares(results, wall, redis_cpu_seconds(settings.redis_url) - redis0)


def main() -> None:
    from eventlog.settings import load_settings
    from projections.daemon import run

    from ..cmd_project import build

    i, n, batch = (int(a) for a in sys.argv[1:4])
    projection = sys.argv[4] if len(sys.argv) > 4 else "redis"
    logging.getLogger("tradelog").setLevel(logging.WARNING)
    projector = build(projection, load_settings(), (i, n))
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    events = run(projector, threading.Event(), until_caught_up=True, batch=batch)
    cpu = time.process_time() - cpu
    mem = memory_kb()
    answer = {"events": events, "cpu": cpu, "rss_kb": mem.get("VmRSS", 0)}
    answer["hwm_kb"] = mem.get("VmHWM", 0)
    print(orjson.dumps(answer).decode(), flush=True)


if __name__ == "__main__":
    main()
