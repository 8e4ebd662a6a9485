"""Raw round trips to Redis: commands packed by hiredis in one write, replies unparsed.

redis-py's pipeline encodes every argument in Python and runs a response
callback per command; for a batch of scripts, or the fifty-odd hashes of one
account, that costs more than Redis itself. Here a batch is packed by hiredis
into one write on a pooled connection, and each reply is read as hiredis gives
it (bytes, lists, integers; an error reply as an exception value) for the
caller to decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis
from hiredis import pack_command

from eventlog._exceptions import RedisUnavailable

__all__ = ["connection", "pack", "read", "round_trip", "write"]


def pack(commands: Iterable[Sequence[Any]]) -> bytes:
    return b"".join([pack_command(tuple(command)) for command in commands])


def connection(client: redis.Redis) -> Any:
    """A connection of the client's pool (redis-py's Connection is untyped)."""
    try:
        return client.connection_pool.get_connection()
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot reach Redis: {e}") from e


def write(conn: Any, packed: bytes) -> None:
    try:
        conn.send_packed_command([packed], check_health=False)
    except redis.RedisError as e:
        conn.disconnect()
        raise RedisUnavailable(f"cannot send to Redis: {e}") from e


def read(conn: Any, count: int) -> list[Any]:
    """`count` replies; a command's error reply is returned as its exception."""
    replies: list[Any] = []
    try:
        for _ in range(count):
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as e:  # that command's error; the rest follow
                replies.append(e)
    except redis.RedisError as e:
        conn.disconnect()  # replies may be left unread: never reuse the connection
        raise RedisUnavailable(f"lost the connection to Redis mid-reply: {e}") from e
    return replies


def round_trip(client: redis.Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Each command's raw reply, all in one round trip; RedisUnavailable if one failed."""
    conn = connection(client)
    try:
        write(conn, pack(commands))
        replies = read(conn, len(commands))
    finally:
        client.connection_pool.release(conn)
    for reply in replies:
        if isinstance(reply, Exception):
            raise RedisUnavailable(f"a Redis command failed: {reply}") from reply
    return replies
