"""`tradelog serve`: the HTTP API under uvicorn."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
from typing import TYPE_CHECKING

from eventlog._exceptions import CannotListen
from eventlog.settings import Settings

from .cli import Subparsers, settings_from

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["add_server_flags", "check_address", "register", "settings_env", "worker_app"]


def add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="TRADELOG_HOST (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TRADELOG_PORT (3001)")
    p.add_argument("--workers", type=int, default=None, help="TRADELOG_WORKERS (1)")


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[parent],
        help="serve the HTTP API",
        description="Serves the legacy-compatible HTTP API (uvicorn).",
    )
    add_server_flags(p)
    p.set_defaults(func=run)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as TRADELOG_* variables, so child processes build the same object."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, tuple):
            value = ",".join(value)
        env[f"TRADELOG_{name.upper()}"] = str(value)
    return env


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings in it as resolved here: a child
    started with it builds the same Settings (TRADELOG_CONFIG is dropped, as it is read)."""
    env = {k: v for k, v in os.environ.items() if k != "TRADELOG_CONFIG"}
    env.update(settings_env(settings))
    return env


def check_address(settings: Settings) -> None:
    """CannotListen if the API could not listen on its host and port, said before anything
    starts: uvicorn would only fail in the worker, after "serving on" was printed, and
    `up` would restart it again and again."""
    where = f"{settings.host}:{settings.port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as e:  # (socket.gaierror is one)
        if e.errno == errno.EADDRINUSE:
            hint = "is another tradelog serving there? --port or TRADELOG_PORT picks another"
        else:
            hint = "--host or TRADELOG_HOST names the address"
        raise CannotListen(f"cannot listen on {where}: {e.strerror or e} ({hint})") from e


def _shared_metrics(settings: Settings) -> None:
    """Let the workers' metrics add up over every worker (api/metrics.py), from zero: the
    directory is emptied of an earlier run's values. One set by the caller is kept."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = settings.run_dir / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _stopping(signum: int, frame: object) -> None:
    """Nothing to do: uvicorn has shut down by the time this runs."""


def worker_app() -> Starlette:
    """The app of a uvicorn worker. One of several dies with `serve`: killed -9, it
    left them serving its port with no supervisor, and `up` could not start another."""
    from api.app import create_app

    from .parent import die_with_spawning_parent

    die_with_spawning_parent()
    return create_app()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.keys import load_keys
    from eventlog.torn_tail import cut_torn_tails

    settings = settings_from(args, host=args.host, port=args.port, workers=args.workers)
    check_address(settings)
    keys, created = load_keys(settings, create=True)
    if created:
        print(f"tradelog: no API key configured; generated one in {settings.data_dir}/api_key")
        print(f"tradelog: X-API-Key: {keys[0]}")
    # DESIGN: a torn last line is cut off at start-up, before any worker appends.
    cut_torn_tails(settings)
    if settings.workers > 1:
        _shared_metrics(settings)
    # Workers are separate processes that build their settings from the environment.
    os.environ.update(settings_env(settings))
    os.environ.pop("TRADELOG_CONFIG", None)
    print(
        f"tradelog: serving on http://{settings.host}:{settings.port} "
        f"(phase {settings.phase}, {settings.workers} worker(s), reads from "
        f"{'files' if settings.phase == 1 else 'Redis'})",
        flush=True,
    )
    if settings.phase == 3:  # accepted (it is the plan's next step) but not built yet
        print(
            "tradelog: phase 3 (the stream as primary log) is not built yet: appends go "
            "to the file log first and reads come from Redis, as in phase 2",
            flush=True,
        )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found: a quiet one lets a requested stop end with exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopping)
    uvicorn.run(
        "tools.cmd_serve:worker_app",
        http="api.transport:CoalescingHttpToolsProtocol",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
    )
    return 0
