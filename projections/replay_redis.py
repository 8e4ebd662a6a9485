"""The Redis projection as replay rewrites it: whole accounts, its keys, its position.

Replay never applies events to Redis one by one: it deletes the projection's keys,
saves each folded account whole (`save_document`, pipelined in big batches), and
moves the Redis projector's consumer group past what it wrote. An account a running
projector wrote meanwhile is replaced whole in a WATCHed transaction instead.
"""

from __future__ import annotations

from typing import Any

import redis

from eventlog._exceptions import RedisUnavailable, SettingsError
from eventlog.keys import Keys
from eventlog.log_end import log_end
from eventlog.records import partition_of
from eventlog.redisconn import connect
from eventlog.segments import partition_dir
from eventlog.settings import Settings

from .redis_calls import save_call
from .redis_parking import Parking
from .redis_scripts import SAVE_DOCUMENT, Call, Scripts, Status, status_of
from .replay_fold import Folded, fold_log

__all__ = [
    "clear_redis",
    "count_parked",
    "redis_client",
    "replace_account",
    "save_redis",
    "set_redis_positions",
]

_SAVE_BATCH = 200  # accounts per pipelined round trip of save_document calls
_REDIS_TIMEOUT_MS = 120_000  # a batch of whole accounts can take seconds to apply
# Key kinds of the Redis projection under the prefix (the streams and bookkeeping stay).
_PROJECTION_KINDS = ("meta:", "offers:", "friend:", "friends:index:", "parked:events:")
_PROJECTION_NAMES = ("accounts", "parked")


def redis_client(settings: Settings) -> redis.Redis:
    """A client with time-outs long enough for whole-account batches; SettingsError if off."""
    client = connect(settings, timeout_ms=_REDIS_TIMEOUT_MS)
    if client is None:
        raise SettingsError("TRADELOG_REDIS_URL: the Redis projection needs Redis; it is empty")
    return client


def save_redis(client: redis.Redis, keys: Keys, folded: Folded, partitions: int) -> list[str]:
    """Save every folded account whole into an emptied Redis projection, and park the poisoned.

    The accounts' keys were deleted first, so each save finds version 0 and applies;
    the accounts a running projector wrote meanwhile (a replay with --force) are
    returned, to be replaced whole in a transaction instead.
    """
    scripts = Scripts(client)
    accounts = sorted(folded.folds)
    raced: list[str] = []
    try:
        for i in range(0, len(accounts), _SAVE_BATCH):
            chunk = accounts[i : i + _SAVE_BATCH]
            calls = [Call("", [], ["SADD", keys.accounts(), *chunk])]
            calls += [
                save_call(keys, a, None, folded.folds[a], 0, folded.position(a, partitions))
                for a in chunk
            ]
            replies = scripts.run(calls)[1:]
            raced += [a for a, r in zip(chunk, replies, strict=True)
                      if status_of(r)[0] is not Status.APPLIED]  # fmt: skip
        parking = Parking(client, keys, scripts)
        for account, bad in sorted(folded.poisoned.items()):
            scripts.run([Call("", [], ["SADD", keys.accounts(), account])])
            scripts.run(parking.park(account, bad.events, bad.error))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot write the Redis projection: {e}") from e
    return raced


def clear_redis(client: redis.Redis, keys: Keys) -> int:
    """Delete the Redis projection's keys (accounts and parked records); return how many."""
    prefix = keys.prefix + ":"
    doomed: list[bytes] = []
    count = 0
    try:
        for key in client.scan_iter(match=f"{keys.prefix}:*", count=10_000):
            rest = key[len(prefix) :].decode(errors="replace")
            if rest.startswith(_PROJECTION_KINDS) or rest in _PROJECTION_NAMES:
                doomed.append(key)
            if len(doomed) >= 1000:
                count += int(client.unlink(*doomed))
                doomed = []
        if doomed:
            count += int(client.unlink(*doomed))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot clear the Redis projection: {e}") from e
    return count


def count_parked(client: redis.Redis, keys: Keys) -> int:
    try:
        return int(client.hlen(keys.parked()))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the parked accounts: {e}") from e


def set_redis_positions(client: redis.Redis, keys: Keys, ends: dict[int, int]) -> None:
    """Move the Redis projector's group on each stream to the last replayed entry.

    Entries up to it are in the projection now: the group skips them (pending ones
    are acknowledged), so the daemon goes on with the next. The progress hash says
    the same to the API; its heartbeat is left alone (this is not the daemon).
    """
    group = keys.group()
    try:
        for p, end in sorted(ends.items()):
            stream, last = keys.log(p), f"0-{end}"  # offset end-1 has the entry id 0-end
            try:
                client.xgroup_create(stream, group, id=last, mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
                client.xgroup_setid(stream, group, last)
            while rows := client.xpending_range(stream, group, "-", last, 1000):
                client.xack(stream, group, *[row["message_id"] for row in rows])
        client.hset(keys.progress("redis"), mapping={str(p): end for p, end in ends.items()})
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot set the Redis projector's position: {e}") from e


def replace_account(
    settings: Settings,
    client: redis.Redis,
    keys: Keys,
    scripts: Scripts,
    folded: Folded,
    account: str,
    ends: dict[int, int],
) -> None:
    """Replace one account's Redis keys with its fold, atomically (MULTI/EXEC, WATCHed).

    If the projection holds a later version than the fold, a projector may have applied
    events appended after the log was read: the fold reads on, and tries again. A
    version the log never reached is damage, and is replaced.
    """
    p = partition_of(account, settings.partitions)
    for _ in range(100):
        pipe: Any = client.pipeline(transaction=True)  # redis-py's Pipeline is untyped here
        try:
            pipe.watch(keys.meta(account))
            held = int(pipe.hget(keys.meta(account), "version") or 0)
            fold = folded.folds.get(account)
            if held > (0 if fold is None else int(fold.doc["version"])):
                end = log_end(partition_dir(settings.log_dir, p))
                if end > ends[p]:
                    fold_log(settings, {p: end}, folded, start={p: ends[p]})
                    ends[p] = end
                    continue
            friends = [
                keys.friend(account, f.decode()) for f in pipe.smembers(keys.friends_index(account))
            ]
            friends += pipe.scan_iter(match=keys.friend(account, "*"), count=1000)
            pipe.multi()
            pipe.delete(*_account_keys(keys, account), *friends)
            if fold is None:
                pipe.srem(keys.accounts(), account)
            else:
                position = folded.position(account, settings.partitions)
                call = save_call(keys, account, None, fold, 0, position)
                sha = scripts.sha[SAVE_DOCUMENT]
                pipe.execute_command("EVALSHA", sha, len(call.keys), *call.keys, *call.args)
                pipe.sadd(keys.accounts(), account)
            pipe.execute()
            return
        except redis.WatchError:
            continue  # a projector changed the account meanwhile: read it again
        finally:
            pipe.reset()
    raise RedisUnavailable(f"the Redis projection of {account} kept changing while replaced")


def _account_keys(keys: Keys, account: str) -> list[str]:
    return [
        keys.meta(account),
        keys.offers(account),
        keys.offers_index(account),
        keys.friends_index(account),
    ]
