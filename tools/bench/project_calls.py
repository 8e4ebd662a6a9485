"""The Redis projector's own script calls, made ready for the raw EVALSHA ceiling.

`bench project` compares the Redis projector with raw pipelined EVALSHA. The
ceiling of the projector's part is the write it makes per event, with nothing
else around it: the offer script (lua/atomic_upsert_trade_offer.lua) with the
arguments the projector would send for one event. `upsert_calls` takes the
first events of the bench's log, plans each on its own (projections.redis_plan,
the projector's code) under a scratch key prefix, and returns the calls with a
`reset` that deletes everything they write, so the baseline can run them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from eventlog.keys import Keys
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from projections.fold import Fold
from projections.redis_plan import plan
from projections.redis_scripts import UPSERT_OFFER

__all__ = ["upsert_calls"]

Calls = list[tuple[list[str], list[Any]]]


def upsert_calls(
    settings: Settings, client: redis.Redis, prefix: str, limit: int
) -> tuple[Calls, Callable[[], None]]:
    """Up to `limit` offer-script calls, one per event of the log, in log order per
    account; and a reset that deletes every key they write."""
    keys = Keys(prefix)
    states: dict[str, Fold | None] = {}
    calls: Calls = []
    share = max(1, limit // settings.partitions)
    for p in range(settings.partitions):
        cursor = Cursor(partition_dir(settings.log_dir, p), p)
        try:
            events, _ = cursor.read(limit=share)
        finally:
            cursor.close()
        for event in events[:share]:
            done = plan(keys, event.account, states.get(event.account), [event])
            states[event.account] = done.state
            calls += [(c.keys, c.args) for c in done.calls if c.script == UPSERT_OFFER]
    written = sorted({key for call_keys, _ in calls for key in call_keys})

    def reset() -> None:
        for at in range(0, len(written), 1000):
            client.delete(*written[at : at + 1000])

    return calls, reset
