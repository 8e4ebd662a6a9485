"""The Redis projector as a group of processes, each on its share of the partitions.

Its work is Python's, bound to one core per process, so `tradelog project
redis` runs N processes (one per CPU by default): process i reads the
partitions p with p % N == i. The parent only supervises: it starts the N
shares (`project redis --share I/N --parent PID`), passes SIGTERM and SIGINT
on, and ends with the group: when a share exits unasked (a crash, Redis
gone), it stops the others and exits with that share's status, so whatever
supervises it (`tradelog up`, systemd) starts the whole group again. Each
share has the kernel send it SIGTERM when the parent dies, even by SIGKILL, so
none runs on unsupervised beside the parent's successor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from eventlog._exceptions import SettingsError
from eventlog.settings import Settings

from .cmd_serve import child_env

if TYPE_CHECKING:
    import redis

__all__ = ["projector_client", "run_group"]

_POLL_S = 0.1
_TIMEOUT_MS = 10_000
_STOPPED = (-signal.SIGTERM, -signal.SIGINT)  # a share stopped by a signal before its handler


def projector_client(settings: Settings) -> redis.Redis:
    """A Redis client for a projector process (the group's parent or a share)."""
    from eventlog.redisconn import connect

    # TRADELOG_REDIS_TIMEOUT_MS bounds a writer's calls; a projector has no caller to
    # answer, and one batch's replies may take Redis longer than that on a busy host.
    client = connect(settings, timeout_ms=max(settings.redis_timeout_ms, _TIMEOUT_MS))
    if client is None:
        raise SettingsError("TRADELOG_REDIS_URL: the Redis projector needs Redis; it is empty")
    return client


def _adopt(settings: Settings, n: int) -> None:
    """Hand what dead consumers of this host hold to the shares about to start."""
    from eventlog.keys import Keys
    from projections.redis_slot import adopt, slot_name

    client = projector_client(settings)
    try:
        owners = {p: slot_name(p % n) for p in range(settings.partitions)}
        adopt(client, Keys(settings.key_prefix), settings.run_dir, owners)
    finally:
        client.close()


def _status(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal S: 128 + S, as a shell says


def run_group(settings: Settings, n: int, *, until_caught_up: bool, batch: int | None) -> int:
    """Run the N shares until stopped (or all caught up); return the group's exit status."""
    env = child_env(settings)
    argv = [sys.executable, "-m", "tools.cli", "project", "redis", "--parent", str(os.getpid())]
    if until_caught_up:
        argv.append("--until-caught-up")
    if batch is not None:
        argv += ["--batch", str(batch)]
    procs: list[subprocess.Popen[bytes]] = []
    asked: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        asked.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    # Before any share starts: a stop asked for meanwhile reaches every share started.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _adopt(settings, n)
    for i in range(n):
        if not asked:
            procs.append(subprocess.Popen([*argv, "--share", f"{i}/{n}"], env=env))
    if asked:  # one may have come while a share was being started, and missed it
        on_signal(asked[0], None)
    worst = 0
    live = list(procs)
    while live:
        for proc in [p for p in live if p.poll() is not None]:
            live.remove(proc)
            code = proc.returncode
            if asked and code in (0, *_STOPPED):
                continue
            if code == 0 and until_caught_up:
                continue
            if not worst:
                worst = _status(code) or 1  # a daemon's share never ends by itself
                share = procs.index(proc)
                print(f"project redis: share {share}/{n} exited ({code}): stopping the group")
                for other in live:
                    other.send_signal(signal.SIGTERM)
        if live:
            time.sleep(_POLL_S)
    return worst
