"""The file projector's health: how far it got, and which accounts it parked.

Both read only files (the checkpoint, the log's ends, the dead-letter records),
so any process can report them, the projector running or not.
"""

from __future__ import annotations

from typing import Any

from eventlog.log_end import log_ends
from eventlog.settings import Settings

from .checkpoint import PROJECTOR, now_ms, read_checkpoint
from .file_parking import read_parks

__all__ = ["parked", "progress"]


def parked(settings: Settings) -> list[dict[str, Any]]:
    """The parked accounts, for health: account, version, error, events waiting."""
    return [r.summary() for r in read_parks(settings).values()]


def progress(settings: Settings) -> dict[str, Any]:
    """The file projector's positions, lag per partition against the log's end, heartbeat."""
    cp = read_checkpoint(settings)
    ends = log_ends(settings)
    lag = {p: max(0, end - cp.positions.get(p, 0)) for p, end in ends.items()}
    now = now_ms()
    return {
        "projector": PROJECTOR,
        "positions": {p: cp.positions.get(p, 0) for p in ends},
        "ends": ends,
        "lag": lag,
        "lag_total": sum(lag.values()),
        "heartbeat": cp.heartbeat or None,
        "heartbeat_age_ms": now - cp.heartbeat if cp.heartbeat else None,
        "pid": cp.pid or None,
        "parked": len(read_parks(settings)),
    }
