"""Operational routes: liveness, readiness, metrics, per-account health, summary, history."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from eventlog._exceptions import InvalidInput
from eventlog.history import account_events
from eventlog.writer import Writer

from . import metrics
from .http import JSON, account_of, guarded
from .state import app_state

__all__ = ["account_health", "events", "health", "metrics_route", "ready", "summary"]


@guarded(auth=False)
async def health(request: Request) -> Response:
    st = app_state(request)
    return JSON(
        {
            "success": True,
            "status": "ok",
            "service": "tradelog",
            "uptime": round(time.monotonic() - st.started, 3),
            "phase": st.settings.phase,
            "redis": _redis_health(st.writer),
        }
    )


def _redis_health(writer: Writer) -> str:
    """What this worker's writes last found of Redis, without asking it (a liveness
    probe must not wait on Redis): `/ready` asks."""
    if writer.stream is None:
        return "disabled"
    return "failing" if writer.redis_failing else "ok"


def _projectors(request: Request) -> dict[str, Any]:
    from .status import projector_status

    return projector_status(app_state(request).settings, app_state(request).reads)


def _stalled(name: str, info: dict[str, Any]) -> str:
    """Why the projector reads come from leaves them behind the log, or "": it does not
    run, or no process of it holds some partitions, and events wait there. (One that
    does not run with nothing to apply holds no read back.)"""
    lag = info.get("lag") or {}
    if not info.get("running", True):
        behind = sum(lag.values())
        if not behind:
            return ""
        return (
            f"the {name} projector, which reads come from, is not running, and {behind} "
            f"{_waits(behind)} for it: start it (`tradelog project {name}`, or `tradelog up`)"
        )
    unheld = info.get("unheld") or []  # (partitions with events waiting only)
    if not unheld:
        return ""
    behind = sum(lag[p] for p in unheld)
    return (
        f"no process of the {name} projector, which reads come from, holds partitions "
        f"{', '.join(map(str, unheld))}, where {behind} {_waits(behind)}: one of its "
        "processes hangs or is gone (restart the projector)"
    )


def _waits(events: int) -> str:
    return "event waits" if events == 1 else "events wait"


@guarded()
async def ready(request: Request) -> Response:
    st = app_state(request)
    log_dir = st.settings.log_dir
    writable = log_dir.is_dir() and os.access(log_dir, os.W_OK)
    redis_state = await asyncio.to_thread(st.reads.redis_state)
    projectors = await asyncio.to_thread(_projectors, request)
    needs_redis = st.settings.phase >= 2
    read_from = "redis" if needs_redis else "file"
    stalled = _stalled(read_from, projectors.get(read_from) or {})
    # Said, not gating: a damaged line stops writes to its partition only, and every
    # worker shares the log (a probe failing on it would take the whole service out).
    damaged = dict(st.writer.damaged)
    ok = writable and (redis_state["reachable"] or not needs_redis) and not stalled
    body: dict[str, Any] = {
        "success": ok,
        "status": "ready" if ok else "not ready",
        "phase": st.settings.phase,
        "log_writable": writable,
        "log_damaged": {str(p): why for p, why in sorted(damaged.items())},
        "redis": redis_state,
        "redis_written_failures": st.writer.redis_failures,
        "projectors": projectors,
    }
    if not ok:  # a 503 is an error: it carries the error shape too (the client prints `error`)
        if not writable:
            why = "the log directory is not writable"
        elif needs_redis and not redis_state["reachable"]:
            why = "Redis is unreachable"
        else:
            why = stalled
        body.update(error=f"not ready: {why}", code="not_ready", details=None)
    return JSON(body, status_code=200 if ok else 503)


@guarded()
async def metrics_route(request: Request) -> Response:
    projectors = await asyncio.to_thread(_projectors, request)
    now = time.time()
    for name, info in projectors.items():
        for p, lag in (info.get("lag") or {}).items():
            metrics.PROJECTION_LAG.labels(name, str(p)).set(lag)
        if info.get("heartbeat"):
            metrics.PROJECTOR_HEARTBEAT_AGE.labels(name).set(now - info["heartbeat"] / 1000)
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@guarded()
async def account_health(request: Request) -> Response:
    from .status import account_status

    account = account_of(request)
    st = app_state(request)
    body = await asyncio.to_thread(account_status, st.settings, st.reads, st.writer, account)
    return JSON({"success": True, **body})


@guarded()
async def summary(request: Request) -> Response:
    from .status import summarize

    st = app_state(request)
    body = await asyncio.to_thread(summarize, st.settings, st.reads)
    return JSON({"success": True, **body})


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # isascii: str.isdigit() is also true for "²", which int() refuses (a 500).
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}", code="bad_query")
    return int(raw)


@guarded()
async def events(request: Request) -> Response:
    account = account_of(request)
    # Versions start at 1; 0 is taken as "from the start" too, as a reader counting
    # from zero would ask.
    from_version = max(1, _int_param(request, "from_version", 1, 0, 2**53))
    limit = _int_param(request, "limit", 100, 1, 1000)
    st = app_state(request)
    found = await asyncio.to_thread(account_events, st.settings, account, from_version, limit)
    envelopes = [e.to_dict() for e in found]
    next_from = found[-1].version + 1 if found else from_version
    return JSON(
        {
            "success": True,
            "steam_id": account,
            "events": envelopes,
            "count": len(envelopes),
            "next_from_version": next_from,
        }
    )
