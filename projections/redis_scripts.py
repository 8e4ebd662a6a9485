"""The Redis projection's Lua scripts: their calls, sent in batches.

Each apply script compares-and-sets the account's version (see the headers in
lua/) and answers {status, version}: `status_of` maps that to a Status. The
calls are built in redis_calls. `run` sends a batch of calls by EVALSHA in one
write and waits for the replies; `send` and `receive` split that in two on a
connection of their own, so Redis runs one batch while the caller folds the next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis

from eventlog._exceptions import RedisUnavailable, UnexpectedReply
from lua import source

from . import redis_wire as wire

__all__ = ["Call", "Scripts", "Status", "status_of"]

UPSERT_OFFER = "atomic_upsert_trade_offer.lua"
UPSERT_FRIEND = "upsert_friend.lua"
REMOVE_FRIENDS = "bulk_remove_friends.lua"
SAVE_DOCUMENT = "save_document.lua"
PARK_EVENT = "park_event.lua"
UNPARK = "unpark.lua"
LEASE = "partition_lease.lua"
_NAMES = (UPSERT_OFFER, UPSERT_FRIEND, REMOVE_FRIENDS, SAVE_DOCUMENT, PARK_EVENT, UNPARK, LEASE)


class Status(IntEnum):
    """What an apply script did (its first reply element)."""

    APPLIED = 1
    ALREADY = 0  # the account already holds this version or a later one: a redelivery
    STALE = -1  # the account holds another version than the change was computed from


@dataclass(slots=True)
class Call:
    """One script call (or, with no script, a plain command in `args`); for the apply
    scripts, the versions it takes the account across."""

    script: str
    keys: list[str]
    args: list[Any]
    account: str = ""
    base: int = 0
    version: int = 0


class Scripts:
    """The scripts loaded into one Redis; calls go by SHA, reloaded when Redis lost them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sha: dict[str, str] = {}
        self._conn: Any = None
        self._sent: deque[Sequence[Call]] = deque()
        self.load()

    def load(self) -> None:
        try:
            for name in _NAMES:
                self.sha[name] = str(self.client.script_load(source(name)))
        except redis.RedisError as e:
            raise RedisUnavailable(f"cannot load the projection's scripts: {e}") from e

    def run(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's raw reply, all in one round trip (on a connection of the pool)."""
        conn = wire.connection(self.client)
        try:
            wire.write(conn, self._pack(calls))
            return self._replies(conn, calls)
        finally:
            self.client.connection_pool.release(conn)

    def send(self, calls: Sequence[Call]) -> None:
        """Send calls on this object's own connection without waiting for the replies;
        `receive` collects them later, in the order sent, so Redis runs the scripts
        while the caller computes the next batch."""
        if self._conn is None:
            self._conn = wire.connection(self.client)
        try:
            wire.write(self._conn, self._pack(calls))
        except RedisUnavailable:
            self.drop()
            raise
        self._sent.append(calls)

    def receive(self) -> list[Any]:
        """The replies of the oldest `send` not yet received."""
        if self._conn is None or not self._sent:
            raise RedisUnavailable("the replies were lost with the connection to Redis")
        calls = self._sent.popleft()
        try:
            return self._replies(self._conn, calls)
        except RedisUnavailable:
            self.drop()
            raise

    def drop(self) -> None:
        """Forget the own connection and whatever is in flight on it."""
        self._sent.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self.client.connection_pool.release(conn)

    def _pack(self, calls: Sequence[Call]) -> bytes:
        sha = self.sha
        return wire.pack(
            ("EVALSHA", sha[c.script], len(c.keys), *c.keys, *c.args)
            if c.script
            else c.args  # a plain command riding in the same round trip
            for c in calls
        )

    def _replies(self, conn: Any, calls: Sequence[Call]) -> list[Any]:
        """Read one reply per call. A call lost to NOSCRIPT (a restarted or flushed
        Redis) is run again once the scripts are loaded: every script is safe to repeat."""
        replies = wire.read(conn, len(calls))
        lost = [i for i, r in enumerate(replies) if _noscript(r)]
        if lost:
            self.load()
            for i, reply in zip(lost, self.run([calls[i] for i in lost]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise RedisUnavailable(f"a Redis projection command failed: {reply}") from reply
        return replies


def _noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError)


def status_of(reply: Any) -> tuple[Status, int]:
    """An apply script's reply as (status, version held or reached)."""
    try:
        return Status(int(reply[0])), int(reply[1])
    except (TypeError, ValueError, IndexError) as e:
        raise UnexpectedReply(f"an apply script answered {reply!r}") from e
