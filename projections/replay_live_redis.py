"""`replay redis --live`: rebuild the Redis projection beside the running one.

The rebuild is folded from the log and saved under a fresh key prefix, then
caught up with what was appended meanwhile, and each account is swapped into
place by `swap_account.lua`: one step per account (all its keys share a hash
tag), taken only when the rebuilt copy is at least as far as the live one, so a
reader sees one copy or the other, whole. A live projector that is behind then
finds the account ahead and skips what it holds; one that is ahead makes the
swap wait for the next catch-up round. The fresh prefix is empty at the end.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis

from eventlog._exceptions import RedisUnavailable, TradelogError
from eventlog.keys import Keys
from eventlog.log_end import log_ends
from eventlog.records import StoredEvent
from eventlog.settings import Settings
from lua import source

from .fold import Fold
from .redis_calls import save_call
from .redis_scripts import Call, Scripts, Status, status_of
from .replay_fold import Folded, fold_log
from .replay_jobs import Meter
from .replay_pass import ReplayReport
from .replay_redis import clear_redis, redis_client

__all__ = ["replay_redis_live"]

_ROUNDS = 200  # catch-up rounds before giving up on accounts a projector keeps moving
_SAVE_BATCH = 200


def _versions(client: redis.Redis, keys: Keys, accounts: list[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for a in accounts:
        pipe.hget(keys.meta(a), "version")
    return {a: int(v or 0) for a, v in zip(accounts, pipe.execute(), strict=True)}


def _save(client: redis.Redis, fresh: Keys, folded: Folded, accounts: list[str],
          saved: dict[str, Fold], partitions: int) -> None:  # fmt: skip
    scripts = Scripts(client)
    for i in range(0, len(accounts), _SAVE_BATCH):
        chunk = accounts[i : i + _SAVE_BATCH]
        calls: list[Call] = []
        for a in chunk:
            before = saved.get(a)
            base = int(before.doc["version"]) if before is not None else 0
            position = folded.position(a, partitions)
            calls.append(save_call(fresh, a, before, folded.folds[a], base, position))
        for a, reply in zip(chunk, scripts.run(calls), strict=True):
            status, held = status_of(reply)
            if status is not Status.APPLIED and held != int(folded.folds[a].doc["version"]):
                raise TradelogError(f"the fresh copy of {a} is at {held}: {status.name}")
            saved[a] = folded.folds[a]


def _swap(client: redis.Redis, live: Keys, fresh: Keys, account: str, fold: Fold) -> bool:
    new_friends = list(fold.doc["negotiations"] or ())
    members = cast(set[bytes], client.smembers(live.friends_index(account)))
    old = {m.decode() for m in members}
    others = sorted(old - set(new_friends))
    keys = [live.meta(account), live.offers(account), live.offers_index(account),
            live.friends_index(account), fresh.meta(account), fresh.offers(account),
            fresh.offers_index(account), fresh.friends_index(account)]  # fmt: skip
    keys += [live.friend(account, f) for f in (*new_friends, *others)]
    keys += [fresh.friend(account, f) for f in new_friends]
    args: list[Any] = [fold.doc["version"], len(new_friends) + len(others), len(new_friends)]
    reply = client.eval(source("swap_account.lua"), len(keys), *keys, *args)
    return int(cast(list[int], reply)[0]) == 1


def replay_redis_live(settings: Settings, meter: Meter | None = None) -> ReplayReport:
    """Rebuild under a fresh prefix, catch up, swap every account in; see the module doc."""
    started = time.perf_counter()
    client = redis_client(settings)
    live = Keys(settings.key_prefix)
    fresh = Keys(f"{settings.key_prefix}-replay-{time.time_ns()}")
    report = ReplayReport("live", ("redis",))
    try:
        ends = log_ends(settings)
        if meter is not None:
            meter.start(sum(ends.values()), f"replaying redis into {fresh.prefix}")
        folded = fold_log(settings, ends, Folded(), tick=meter.advance if meter else None)
        report.fold_seconds = time.perf_counter() - started
        saved: dict[str, Fold] = {}
        _save(client, fresh, folded, sorted(folded.folds), saved, settings.partitions)
        report.write_seconds["redis"] = time.perf_counter() - started - report.fold_seconds
        pending = set(folded.folds)
        for _ in range(_ROUNDS):
            now = log_ends(settings)
            moved: set[str] = set()

            def observe(p: int, events: list[StoredEvent], moved: set[str] = moved) -> None:
                moved.update(e.account for e in events)

            fold_log(settings, now, folded, start=ends, observe=observe)
            ends = now
            changed = sorted(a for a in moved if a in folded.folds)
            pending.update(changed)
            _save(client, fresh, folded, changed, saved, settings.partitions)
            todo = sorted(pending)
            held = _versions(client, live, todo)
            for account in todo:
                fold = folded.folds[account]
                if held[account] <= int(fold.doc["version"]) and _swap(
                    client, live, fresh, account, fold
                ):
                    pending.discard(account)
                    saved.pop(account)  # its fresh keys moved into place: none are left
            if not pending:
                break
        if folded.folds:
            client.sadd(live.accounts(), *folded.folds)
        clear_redis(client, fresh)
    except redis.RedisError as e:
        raise RedisUnavailable(f"live Redis replay failed: {e}") from e
    finally:
        client.close()
    report.events = folded.events
    report.accounts = len(folded.folds)
    report.ends = ends
    report.parked = {a: bad.error for a, bad in folded.poisoned.items()}
    report.seconds = time.perf_counter() - started
    if pending:
        report.notes.append(f"{len(pending)} accounts kept moving and were not swapped")
        raise TradelogError(report.notes[-1] + ": run the live replay again")
    report.notes.append(f"built under {fresh.prefix}, swapped account by account, dropped")
    return report
