"""The Redis projector's progress hash, `keys.progress("redis")`: written and read here.

Fields: each partition's next offset to apply (`"<p>"`), `heartbeat` (ms) and
`heartbeat_by` (the consumer that beat last), and per consumer `heartbeat:<name>`
(its last beat, until its clean stop) and `stopped:<name>` (ms of its clean
stop). API workers wait on the partition offsets (rung through the progress bell
as well); health reads the heartbeat; `replay` reads all of it to tell whether a
projector still runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import redis

from eventlog._exceptions import RedisUnavailable
from eventlog.keys import Keys
from eventlog.notify import Ringer
from eventlog.records import as_text

from .checkpoint import FRESH_MS, now_ms

__all__ = ["FRESH_MS", "beating", "projector_activity", "publish", "say_stopped"]
_NAME = "redis"


def publish(
    client: redis.Redis, keys: Keys, positions: dict[int, int], by: str, ringer: Ringer
) -> None:
    """Record the positions reached and a heartbeat, and ring the progress bell (with the
    projector's kept Ringer: a step can publish a few events' progress, and listing the
    bell's listeners and opening a socket each time cost ~3x the ring itself)."""
    progress = {str(p): n for p, n in positions.items()}
    fields: dict[Any, Any] = {"heartbeat": int(time.time() * 1000), **progress}
    fields["heartbeat_by"] = by
    fields[f"heartbeat:{by}"] = fields["heartbeat"]
    client.hset(keys.progress(_NAME), mapping=fields)
    message = orjson.dumps({"projector": _NAME, "positions": progress})
    ringer.ring(message)


def say_stopped(client: redis.Redis, keys: Keys, by: str) -> None:
    """Record a clean stop: a heartbeat stays fresh for a while after the last one, and
    this says no beat of `by` will follow, so `replay` need not wait for it to age."""
    # Its own beat field goes (a field per consumer name would pile up otherwise); the
    # stop stays to cancel the shared `heartbeat` if `by` beat last.
    pipe = client.pipeline(transaction=True)
    pipe.hdel(keys.progress(_NAME), f"heartbeat:{by}")
    pipe.hset(keys.progress(_NAME), f"stopped:{by}", int(time.time() * 1000))
    pipe.execute()


def projector_activity(client: redis.Redis, keys: Keys, partitions: int) -> str | None:
    """Why a Redis projector seems to run (a lease held, a fresh heartbeat), or None."""
    try:
        pipe = client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.exists(keys.lease(p))
        pipe.hgetall(keys.progress(_NAME))
        *leases, fields = pipe.execute()
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the Redis projector's state: {e}") from e
    held = sum(int(n) for n in leases)
    if held:
        return f"it holds the lease of {held} partitions"
    return beating(fields)


def beating(progress: Mapping[Any, Any], fresh_ms: int = FRESH_MS) -> str | None:
    """Why the progress hash (as HGETALL gave it) says a projector beats, or None."""
    fields = {as_text(k): as_text(v) for k, v in progress.items()}
    # Per consumer: the processes of a group (and a standby) beat and stop each on its
    # own, in any interleaving, so "the last beat" and "the last stop" may be two
    # different consumers' while every one of them has stopped.
    beats = {
        k.removeprefix("heartbeat:"): int(v)
        for k, v in fields.items()
        if k.startswith("heartbeat:")
    }
    if "heartbeat" in fields:  # also a beat from before the per-consumer fields
        by = fields.get("heartbeat_by", "")
        beats[by] = max(beats.get(by, 0), int(fields["heartbeat"]))
    if "stopped_by" in fields:  # a stop recorded so before them
        old = f"stopped:{fields['stopped_by']}"
        fields[old] = str(max(int(fields.get(old, 0)), int(fields.get("stopped", 0))))
    now = now_ms()
    ages = [
        now - beat for name, beat in beats.items() if int(fields.get(f"stopped:{name}", 0)) < beat
    ]
    fresh = [age for age in ages if age < fresh_ms]
    return f"its heartbeat is {min(fresh)} ms old" if fresh else None
