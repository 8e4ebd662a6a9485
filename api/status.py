"""Status reports shared by /ready, /metrics, per-account health and the summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis

from eventlog._exceptions import (
    CorruptSnapshot,
    LegacyNotImported,
    RedisUnavailable,
    SnapshotUnavailable,
)
from eventlog.history import account_events
from eventlog.log_end import log_ends
from eventlog.records import as_text
from eventlog.settings import Settings
from eventlog.writer import Writer

from .reads import Reads

__all__ = ["account_status", "log_ends", "projector_status", "summarize"]


def _lag(ends: dict[int, int], positions: dict[int, int]) -> dict[int, int]:
    return {p: max(0, end - positions.get(p, 0)) for p, end in ends.items()}


def projector_status(settings: Settings, reads: Reads) -> dict[str, Any]:
    """Each projector's positions, lag per partition, heartbeat (ms), whether it runs
    (a fresh heartbeat, and for the file projector a live process), parked accounts."""
    from projections.checkpoint import STALLED_MS, read_checkpoint, running
    from projections.file_projector import parked as file_parked
    from projections.redis_progress import beating

    ends = log_ends(settings)
    out: dict[str, Any] = {}
    cp = read_checkpoint(settings)
    positions = dict(cp.positions)
    out["file"] = {
        "positions": positions,
        "lag": _lag(ends, positions),
        "heartbeat": cp.heartbeat or None,
        "running": running(cp),
        "parked": file_parked(settings),
    }
    if reads.redis is not None:
        try:
            pipe = reads.redis.pipeline(transaction=False)
            pipe.hgetall(reads.keys.progress("redis"))
            pipe.hgetall(reads.keys.parked())
            for p in range(settings.partitions):
                pipe.exists(reads.keys.lease(p))
            raw, parked_raw, *leased = pipe.execute()
        except redis.RedisError as e:
            out["redis"] = {"error": str(e)}
        else:
            positions = {int(k): int(v) for k, v in raw.items() if k.isdigit()}
            why = beating(raw, fresh_ms=STALLED_MS)
            lag = _lag(ends, positions)
            # A process of the group that hangs lets its leases lapse while the others
            # keep the heartbeat fresh: its partitions' events wait with no consumer.
            unheld = [p for p, n in lag.items() if n and not leased[p]]
            out["redis"] = {
                "positions": positions,
                "lag": lag,
                "heartbeat": int(raw.get(b"heartbeat", 0)) or None,
                "running": why is not None,
                "unheld": unheld,
                "parked": [as_text(k) for k in parked_raw],
            }
    return out


def account_status(
    settings: Settings, reads: Reads, writer: Writer, account: str
) -> dict[str, Any]:
    history = account_events(settings, account, 1, 10**9)
    log_version = history[-1].version if history else 0
    file_error: str | None = None
    try:
        file_doc, file_version = reads.file_document(account)
    except (CorruptSnapshot, SnapshotUnavailable) as e:  # said here, not a 503 of it all
        file_doc, file_version, file_error = None, 0, str(e)
    if file_doc is None and file_error is None:
        try:
            reads.check_imported(account, log_version)
        except LegacyNotImported as e:  # (in phase 1, as its GET says)
            file_error = str(e)
    redis_exists = False
    redis_meta: dict[str, Any] | None = None
    redis_version: int | None = None
    redis_error: str | None = None
    if reads.redis is not None:
        try:
            meta = reads.redis.hgetall(reads.keys.meta(account))
        except redis.RedisError as e:
            meta, redis_error = {}, f"Redis unreachable: {e}"
        if meta:
            redis_exists = True
            redis_meta = {as_text(k): as_text(v) for k, v in meta.items()}
            redis_version = int(redis_meta.get("version", 0))
    return {
        "steam_id": account,
        "file_exists": file_doc is not None,
        "file_stats": reads.file_stats(account),
        "file_error": file_error,
        "redis_exists": redis_exists,
        "redis_metadata": redis_meta,
        "redis_error": redis_error,
        "versions": {"log": log_version, "file": file_version, "redis": redis_version},
        # With Redis on, its projection counts: an account it lacks (version 0) or that
        # could not be read is not in sync; with Redis off, only the files count.
        "in_sync": file_version == log_version
        and file_error is None
        and (reads.redis is None or (redis_error is None and (redis_version or 0) == log_version)),
    }


def summarize(settings: Settings, reads: Reads) -> dict[str, Any]:
    """Totals over the read projection: accounts, offers (by state), friends, events."""
    if reads.source == "file":
        accounts = sorted(p.stem for p in settings.snapshot_dir.glob("*.json") if p.stem.isdigit())
        load = reads.file_document
    else:
        if reads.redis is None:
            raise RedisUnavailable("Redis is disabled (TRADELOG_REDIS_URL is empty)")
        try:
            members = reads.redis.smembers(reads.keys.accounts())
        except redis.RedisError as e:  # a 503 like every Redis read, not a 500
            raise RedisUnavailable(f"cannot read the Redis projection: {e}") from e
        accounts = sorted(as_text(m) for m in members)
        load = reads.redis_document
    offers = 0
    friends = 0
    by_state: Counter[str] = Counter()
    unreadable = 0
    for account in accounts:
        try:
            doc, _ = load(account)
        except (CorruptSnapshot, SnapshotUnavailable):  # one damaged file: counted, not a 503
            unreadable += 1
            continue
        if doc is None:
            continue
        for offer in doc.get("trade_offers") or ():
            offers += 1
            state = offer.get("state")  # (a saved offer may have none: not "None")
            by_state[state if isinstance(state, str) else "unknown"] += 1
        friends += len(doc.get("negotiations") or {})
    return {
        "accounts": len(accounts),
        "trade_offers": offers,
        "trade_offers_by_state": dict(sorted(by_state.items())),
        "friends": friends,
        "events": sum(log_ends(settings).values()),
        "source": reads.source,
        "unreadable": unreadable,
    }
