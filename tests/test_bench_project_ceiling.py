"""The raw EVALSHA ceiling of `bench project`: the projector's own offer-script calls,
one per event of the log, each of which must apply; nothing left behind."""

from __future__ import annotations

import pytest
import redis

from eventlog import Writer
from eventlog.records import TRADE_OFFER_UPSERTED
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from lua import source
from projections.redis_scripts import UPSERT_OFFER
from tools.bench.baselines import raw_script_per_s
from tools.bench.project_calls import upsert_calls
from tools.bench.workload import OfferStream

PREFIX = "ceiling"


def _log(settings: Settings, events: int) -> None:
    stream = OfferStream(seed=3, accounts=64)
    with Writer(settings) as writer:
        for _ in range(events):
            account, data = stream.next()
            writer.append(account, TRADE_OFFER_UPSERTED, data, source="bench")


def test_the_ceiling_runs_the_offer_script_per_event_and_cleans_up(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _log(settings, 400)
    ready = upsert_calls(settings, redis_client, PREFIX, 80)
    firsts = 0  # 20 events of each of the 4 partitions: one call each, but each
    for p in range(settings.partitions):  # account's first is made by `reset`, untimed
        cursor = Cursor(partition_dir(settings.log_dir, p), p)
        events, _ = cursor.read(limit=20)
        cursor.close()
        firsts += len({e.account for e in events[:20]})
    assert len(ready.calls) == 80 - firsts > 0
    assert all(k.startswith(f"{PREFIX}:") for keys, _ in ready.calls for k in keys)
    # Several passes: each starts from what `reset` left, so every call applies again.
    script = source(UPSERT_OFFER)
    rate = raw_script_per_s(
        redis_client, script, ready.calls, ready.reset, seconds=0.2, clear=ready.clear
    )
    assert rate > 0
    assert list(redis_client.scan_iter(f"{PREFIX}:*")) == []


def test_a_call_that_does_not_apply_stops_the_ceiling(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _log(settings, 40)
    calls, reset, _ = upsert_calls(settings, redis_client, PREFIX, 40)
    passes: list[int] = []

    def first_only() -> None:  # the second pass finds the versions already applied
        if not passes:
            reset()
        passes.append(1)

    with pytest.raises(RuntimeError, match="did not apply"):
        raw_script_per_s(redis_client, source(UPSERT_OFFER), calls, first_only, seconds=60)
    assert len(passes) == 2
