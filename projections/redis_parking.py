"""Parked accounts of the Redis projection: the dead-letter record and the waiting list.

A poison event (the fold raises: a bug, never bad input) or a real version gap
parks its account: `keys.parked()` maps the account to a JSON record (account,
version, error, where), the first failure's kept; `keys.parked_events(account)`
holds the failing event and every later one of that account, in version order,
as JSON envelopes. The list exists exactly while the account is parked, and
`park_event.lua` checks that and appends in one step, so events that arrive
while an operator re-applies the account are never lost; every other account
goes on meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
import redis

from eventlog._exceptions import CorruptProjection, RedisUnavailable, UnexpectedReply
from eventlog.keys import Keys
from eventlog.records import StoredEvent

from .redis_scripts import PARK_EVENT, UNPARK, Call, Scripts

__all__ = ["Parking", "parked_accounts", "parked_error"]


def parked_accounts(client: redis.Redis, keys: Keys) -> set[str]:
    """The accounts the Redis projection has parked."""
    try:
        names = cast(list[bytes], client.hkeys(keys.parked()))
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the parked accounts: {e}") from e
    return {name.decode() for name in names}


def parked_error(client: redis.Redis, keys: Keys, account: str) -> tuple[str, int] | None:
    """Why the account is parked and the last version waiting behind it, or None if it
    is not parked."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hget(keys.parked(), account)
        pipe.llen(keys.parked_events(account))
        raw, waiting = pipe.execute()
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the parked accounts: {e}") from e
    if raw is None:
        return None
    try:
        record = orjson.loads(cast(bytes, raw))
        # Its waiting list holds the failing event and every later one, in order.
        return str(record["error"]), int(record["version"]) + max(int(waiting), 1) - 1
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CorruptProjection(f"the dead-letter record of {account} is unreadable: {e}") from e


class Parking:
    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.accounts: set[str] = set()  # parked as far as this process knows

    def refresh(self) -> set[str]:
        """Re-read which accounts are parked (another consumer may have parked some)."""
        self.accounts = parked_accounts(self.client, self.keys)
        return self.accounts

    def records(self) -> dict[str, dict[str, Any]]:
        """Every parked account's dead-letter record."""
        try:
            raw = cast(dict[bytes, bytes], self.client.hgetall(self.keys.parked()))
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot read the parked accounts: {e}") from e
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    def waiting(self, account: str) -> list[StoredEvent]:
        """A parked account's waiting events, oldest first (the failing one first)."""
        try:
            raw = cast(list[bytes], self.client.lrange(self.keys.parked_events(account), 0, -1))
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot read the parked events of {account}: {e}") from e
        return [StoredEvent.from_dict(orjson.loads(entry)) for entry in raw]

    def _push(self, account: str, events: Sequence[StoredEvent], mode: str) -> list[Call]:
        key = self.keys.parked_events(account)
        return [
            Call(PARK_EVENT, [key], [mode, e.version, orjson.dumps(e.to_dict())], account)
            for e in events
        ]

    def park(self, account: str, events: Sequence[StoredEvent], error: str) -> list[Call]:
        """Calls that park the account at `events[0]` and keep all of `events` waiting."""
        first = events[0]
        record = {
            "account": account,
            "version": first.version,
            "error": error,
            "event_id": first.id,
            "type": first.type,
            "partition": first.partition,
            "offset": first.offset,
        }
        self.accounts.add(account)
        mark = Call("", [], ["HSETNX", self.keys.parked(), account, orjson.dumps(record)])
        return [mark, *self._push(account, events, "park")]

    def follow(self, account: str, events: Sequence[StoredEvent]) -> list[Call]:
        """Calls that add events to the account's waiting list if it is still parked."""
        return self._push(account, events, "follow")

    def followed(self, account: str, replies: Sequence[Any]) -> bool:
        """True if `follow` kept every event; False if the account is no longer parked."""
        codes = [int(r) for r in replies]
        if any(c not in (1, 0, -1) for c in codes):
            raise UnexpectedReply(f"park_event.lua answered {codes!r}")
        if -1 in codes:
            self.accounts.discard(account)
            return False
        return True

    def note(self, account: str, version: int, error: str) -> None:
        """Record where and why a re-apply failed again; the account stays parked."""
        try:
            raw = self.client.hget(self.keys.parked(), account)
            record = orjson.loads(cast(bytes, raw)) if raw else {"account": account}
            record.update(version=version, error=error)
            self.client.hset(self.keys.parked(), account, orjson.dumps(record))
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot record the error of {account}: {e}") from e

    def unpark(self, account: str, count: int) -> bool:
        """End the parking if the list still holds just the `count` events re-applied."""
        key = self.keys.parked_events(account)
        reply = self.scripts.run([Call(UNPARK, [key], [count], account)])[0]
        if int(reply[0]) != 1:
            return False
        try:
            self.client.hdel(self.keys.parked(), account)
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot clear the parked record of {account}: {e}") from e
        self.accounts.discard(account)
        return True
