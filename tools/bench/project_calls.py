"""The Redis projector's own script calls, made ready for the raw EVALSHA ceiling.

`bench project` compares the Redis projector with raw pipelined EVALSHA. The
ceiling of the projector's part is the write it makes per event, with nothing
else around it: the offer script (lua/atomic_upsert_trade_offer.lua) with the
arguments the projector would send for one event. `upsert_calls` takes the
first events of the bench's log, plans each on its own (projections.redis_plan,
the projector's code) under a scratch key prefix, and returns the calls with a
`reset` that deletes everything they write and then makes each account's first
call (which writes its whole meta hash), so the baseline can run them again and
times only the steady state: one offer and a few meta fields per call. In the
bench's log an account's first event is 2% of its events; among the first
20,000, about a fifth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import redis

from eventlog.keys import Keys
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from lua import source
from projections.fold import Fold
from projections.redis_plan import plan
from projections.redis_scripts import UPSERT_OFFER

__all__ = ["Prepared", "upsert_calls"]

Calls = list[tuple[list[str], list[Any]]]


class Prepared(NamedTuple):
    calls: Calls  # timed: every event's call but each account's first
    reset: Callable[[], None]  # untimed: back to where the calls start (firsts made)
    clear: Callable[[], None]  # every key the calls and the firsts write, deleted


def upsert_calls(settings: Settings, client: redis.Redis, prefix: str, limit: int) -> Prepared:
    """The offer-script calls of up to `limit` events of the log (see Prepared)."""
    keys = Keys(prefix)
    states: dict[str, Fold | None] = {}
    firsts: Calls = []  # each account's first call: made by `reset`, untimed
    calls: Calls = []
    share = max(1, limit // settings.partitions)
    for p in range(settings.partitions):
        cursor = Cursor(partition_dir(settings.log_dir, p), p)
        try:
            events, _ = cursor.read(limit=share)
        finally:
            cursor.close()
        for event in events[:share]:
            state = states.get(event.account)
            done = plan(keys, event.account, state, [event])
            states[event.account] = done.state
            made = [(c.keys, c.args) for c in done.calls if c.script == UPSERT_OFFER]
            (firsts if state is None else calls).extend(made)
    written = sorted({key for call_keys, _ in firsts for key in call_keys})
    sha = client.script_load(source(UPSERT_OFFER))

    def clear() -> None:
        for at in range(0, len(written), 1000):
            client.delete(*written[at : at + 1000])

    def reset() -> None:
        clear()
        pipe = client.pipeline(transaction=False)
        for call_keys, args in firsts:
            pipe.evalsha(sha, len(call_keys), *call_keys, *args)
        refused = [r for r in pipe.execute() if not isinstance(r, list) or r[0] != 1]
        if refused:
            raise RuntimeError(f"an account's first call did not apply: {refused[0]!r}")

    return Prepared(calls, reset, clear)
