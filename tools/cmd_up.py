"""`tradelog up`: the API, both projectors and the relay under one supervisor.

Each part runs as its own `tradelog` child process with the same settings
(passed as TRADELOG_* variables). A child that dies is restarted with a
back-off; Ctrl-C or SIGTERM stops every child (each finishes its batch) and
then the supervisor; a supervisor killed outright (SIGKILL) takes its children
with it, through the kernel (PR_SET_PDEATHSIG). With no Redis reachable the
supervisor runs file-only, says so, and starts the relay and the Redis
projector once Redis answers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import redis

from eventlog._exceptions import AlreadyUp
from eventlog.marker import check_partitions, try_lock
from eventlog.redisconn import connect
from eventlog.settings import Settings
from projections.daemon import install_stop_signals

from .cli import Subparsers, settings_from
from .cmd_serve import add_server_flags, check_address, child_env
from .parent import die_with_parent

__all__ = ["register"]

_STOP_GRACE_S = 10.0


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up",
        parents=[parent],
        help="run everything: API, projectors, relay (one command)",
        description="Starts the API, the file and Redis projectors and the relay, "
        "supervised; Ctrl-C stops them all cleanly.",
    )
    add_server_flags(p)
    p.set_defaults(func=run)


@dataclass
class Child:
    name: str
    argv: list[str]
    needs_redis: bool = False
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = field(default=0.0)


def _redis_up(settings: Settings) -> bool:
    client = connect(settings, timeout_ms=500)
    if client is None:
        return False
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _supervise(settings: Settings) -> int:
    """The data dir's supervisor lock, taken: AlreadyUp if another `up` holds it (its
    children would fight this one's for the projector's lock, forever)."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    fd = try_lock(settings.run_dir / "up.lock")
    if fd is None:
        raise AlreadyUp(
            f"another `tradelog up` supervises {settings.data_dir}: stop it first "
            "(each data dir has one)"
        )
    return fd


def run(args: argparse.Namespace) -> int:
    from api.keys import load_keys

    settings = settings_from(args, host=args.host, port=args.port, workers=args.workers)
    check_address(settings)  # (before anything is made in the data dir)
    check_partitions(settings.log_dir, settings.partitions)
    up_lock = _supervise(settings)  # held until this process ends (children do not get it)
    keys, created = load_keys(settings, create=True)
    if created:
        print(f"tradelog: generated an API key in {settings.data_dir}/api_key (mode 0600)")
        print(f"tradelog: X-API-Key: {keys[0]}", flush=True)
    env = child_env(settings)
    # Set in each child before it runs: the kernel stops it when the supervisor dies,
    # even by SIGKILL, so no child runs on unsupervised holding the port and the
    # projector's lock that the supervisor's successor needs.
    with_parent = functools.partial(die_with_parent, os.getpid())
    exe = [sys.executable, "-m", "tools.cli"]
    children = [
        Child("api", [*exe, "serve"]),
        Child("project-file", [*exe, "project", "file"]),
    ]
    if settings.redis_enabled:
        children += [
            Child("relay", [*exe, "relay"], needs_redis=True),
            Child("project-redis", [*exe, "project", "redis"], needs_redis=True),
        ]
    stop = threading.Event()
    install_stop_signals(stop)
    redis_ok = settings.redis_enabled and _redis_up(settings)
    if not settings.redis_enabled:
        print("tradelog: Redis disabled (TRADELOG_REDIS_URL is empty): running file-only")
    elif not redis_ok:
        print(
            f"tradelog: Redis at {settings.redis_where} is not reachable: running FILE-ONLY "
            "(writes go to the file log; the relay fills the streams once Redis answers)"
        )
    print(
        f"tradelog: up on http://{settings.host}:{settings.port}, phase {settings.phase}, "
        f"data in {settings.data_dir}; Ctrl-C stops everything",
        flush=True,
    )
    last_redis_check = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if settings.redis_enabled and not redis_ok and now - last_redis_check > 5:
            last_redis_check = now
            redis_ok = _redis_up(settings)
            if redis_ok:
                print("tradelog: Redis answers now: starting the relay and the Redis projector")
        for child in children:
            if child.needs_redis and not redis_ok:
                continue
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                child.restarts += 1
                delay = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                if now - child.started > 60:
                    child.restarts, delay = 0, 0.5
                print(f"tradelog: {child.name} {_ended(code)}; restarting in {delay:.1f} s")
                child.proc, child.next_start = None, now + delay
            if child.proc is None and now >= child.next_start:
                child.proc = subprocess.Popen(child.argv, env=env, preexec_fn=with_parent)
                child.started = now
        stop.wait(0.5)
    print("tradelog: stopping…", flush=True)
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
        assert child.proc is not None
        child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    for child in running:
        assert child.proc is not None
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"tradelog: {child.name} did not stop within {_STOP_GRACE_S:g} s: killing it")
            child.proc.kill()
            child.proc.wait()
    print("tradelog: stopped", flush=True)
    os.close(up_lock)
    return 0


def _ended(code: int) -> str:
    """How a child ended, as an operator reads it."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited ({code})"
