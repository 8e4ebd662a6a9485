"""The Redis projector's progress hash, `keys.progress("redis")`: written and read here.

Fields: each partition's next offset to apply (`"<p>"`), `heartbeat` (ms) and
`heartbeat_by` (the consumer that beat), and after a clean stop `stopped` (ms)
and `stopped_by`. API workers wait on the partition offsets (rung through the
progress bell as well); health reads the heartbeat; `replay` reads all of it to
tell whether a projector still runs.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from eventlog._exceptions import RedisUnavailable
from eventlog.keys import Keys
from eventlog.notify import Ringer

from .checkpoint import FRESH_MS, now_ms

__all__ = ["BEAT_FIELDS", "FRESH_MS", "beating", "projector_activity", "publish", "say_stopped"]
_NAME = "redis"
# The fields `beating` reads, in its arguments' order.
BEAT_FIELDS = ("heartbeat", "heartbeat_by", "stopped", "stopped_by")


def publish(
    client: redis.Redis, keys: Keys, positions: dict[int, int], by: str, ringer: Ringer
) -> None:
    """Record the positions reached and a heartbeat, and ring the progress bell (with the
    projector's kept Ringer: a step can publish a few events' progress, and listing the
    bell's listeners and opening a socket each time cost ~3x the ring itself)."""
    progress = {str(p): n for p, n in positions.items()}
    fields: dict[Any, Any] = {"heartbeat": int(time.time() * 1000), **progress}
    fields["heartbeat_by"] = by
    client.hset(keys.progress(_NAME), mapping=fields)
    message = orjson.dumps({"projector": _NAME, "positions": progress})
    ringer.ring(message)


def say_stopped(client: redis.Redis, keys: Keys, by: str) -> None:
    """Record a clean stop: a heartbeat stays fresh for a while after the last one, and
    this says no beat of `by` will follow, so `replay` need not wait for it to age."""
    stop: dict[Any, Any] = {"stopped": int(time.time() * 1000), "stopped_by": by}
    client.hset(keys.progress(_NAME), mapping=stop)


def projector_activity(client: redis.Redis, keys: Keys, partitions: int) -> str | None:
    """Why a Redis projector seems to run (a lease held, a fresh heartbeat), or None."""
    try:
        pipe = client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.exists(keys.lease(p))
        pipe.hmget(keys.progress(_NAME), BEAT_FIELDS)
        *leases, (beat, beat_by, stopped, stopped_by) = pipe.execute()
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the Redis projector's state: {e}") from e
    held = sum(int(n) for n in leases)
    if held:
        return f"it holds the lease of {held} partitions"
    return beating(beat, beat_by, stopped, stopped_by)


def beating(
    beat: Any, beat_by: Any, stopped: Any, stopped_by: Any, fresh_ms: int = FRESH_MS
) -> str | None:
    """Why the progress hash's fields (as Redis gave them) say a projector beats, or None."""
    # By name: another consumer (a standby, a successor) may be beating meanwhile, and
    # only a stop of the one that beat last says no beat will follow.
    if beat and stopped and int(stopped) >= int(beat) and stopped_by == beat_by:
        return None
    age = now_ms() - int(beat) if beat else None
    if age is not None and age < fresh_ms:
        return f"its heartbeat is {age} ms old"
    return None
