"""Reading accounts back from the Redis projection, in two pipelined round trips.

The first trip takes an account's meta hash (first, so it fixes the version the
rest must match), offers, offer index and friend ids; the second its friend
hashes and the version again. A version that moved in between means a script
ran mid-read: that account is read again, so every answer is one version's state.
Nothing spans accounts atomically, so this works on Redis Cluster too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import orjson
import redis

from eventlog._exceptions import CorruptProjection, RedisUnavailable
from eventlog.keys import Keys

from . import redis_wire as wire
from .fold import Fold
from .redis_codec import VERSION, document_json

__all__ = [
    "account_version",
    "read_document",
    "read_document_json",
    "read_fold",
    "read_folds",
    "read_folds_apart",
]

_TRIES = 5
_VERSION_B = VERSION.encode()

_Raw = tuple[dict[bytes, bytes], dict[bytes, bytes], list[tuple[bytes, float]], set[bytes]]


def _version_of(meta: dict[bytes, bytes]) -> int:
    raw = meta.get(_VERSION_B)
    return int(raw) if raw is not None else 0


_Read = tuple[bytes, dict[str, int], int]  # the document's JSON, offer scores, version


# Raw replies come as RESP3 gives them (maps, [member, score] pairs) or as RESP2 does
# (flat lists): the protocol is the connection's, so both are read.


def _pairs(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    it = iter(reply)
    return dict(zip(it, it, strict=True))


def _scored(reply: list[Any]) -> list[tuple[bytes, float]]:
    if reply and isinstance(reply[0], list):
        return [(member, float(score)) for member, score in reply]
    it = iter(reply)
    return [(member, float(score)) for member, score in zip(it, it, strict=True)]


def _read_once(
    client: redis.Redis, keys: Keys, accounts: list[str]
) -> tuple[dict[str, _Read | None], list[str]]:
    first = wire.round_trip(
        client,
        [
            command
            for account in accounts
            for command in (
                ("HGETALL", keys.meta(account)),
                ("HGETALL", keys.offers(account)),
                ("ZRANGE", keys.offers_index(account), 0, -1, "WITHSCORES"),
                ("SMEMBERS", keys.friends_index(account)),
            )
        ],
    )
    raws: dict[str, _Raw] = {}
    friend_ids: dict[str, list[str]] = {}
    second: list[tuple[Any, ...]] = []
    for i, account in enumerate(accounts):
        meta, offers, scored, members = first[4 * i : 4 * i + 4]
        raws[account] = (_pairs(meta), _pairs(offers), _scored(scored), set(members))
        friend_ids[account] = [f.decode() for f in members]
        second.append(("HGET", keys.meta(account), VERSION))
        second += [("HGETALL", keys.friend(account, f)) for f in friend_ids[account]]
    replies = iter(wire.round_trip(client, second))
    out: dict[str, _Read | None] = {}
    again: list[str] = []
    for account in accounts:
        meta, offers, index, _ = raws[account]
        now = next(replies)
        friends = {friend: _pairs(next(replies)) for friend in friend_ids[account]}
        if (int(now) if now is not None else 0) != _version_of(meta):
            again.append(account)
            continue
        if not meta:
            out[account] = None
            continue
        try:
            doc, scores = document_json(meta, offers, index, friends)
        # (TypeError, AttributeError: a reserved field that is JSON of another shape)
        except (KeyError, ValueError, UnicodeDecodeError, TypeError, AttributeError) as e:
            raise CorruptProjection(
                f"the Redis projection of {account} cannot be read back: {e!r}"
            ) from e
        out[account] = doc, scores, _version_of(meta)
    return out, again


def _read(client: redis.Redis, keys: Keys, accounts: Iterable[str]) -> dict[str, _Read | None]:
    todo = list(dict.fromkeys(accounts))
    out: dict[str, _Read | None] = {}
    try:
        for _ in range(_TRIES):
            if not todo:
                return out
            done, todo = _read_once(client, keys, todo)
            out.update(done)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the Redis projection: {e}") from e
    raise RedisUnavailable(f"accounts kept changing while read: {', '.join(todo[:5])}")


def _parse(account: str, raw: bytes) -> dict[str, Any]:
    """The document; CorruptProjection if a value in its hashes was not JSON (stored by
    hand: the scripts store only what orjson encoded). Reads that answer the JSON as it
    is (read_document_json, a phase-2 GET) skip this parse: it would cost ~0.8 ms for a
    300 KB document, a third of such a read."""
    try:
        doc: dict[str, Any] = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CorruptProjection(f"the Redis projection of {account} is not JSON: {e}") from e
    return doc


def read_folds(client: redis.Redis, keys: Keys, accounts: Iterable[str]) -> dict[str, Fold | None]:
    """Each account's Fold (doc and offer scores) as the projection holds it; None if unknown."""
    return {
        account: None if got is None else Fold(_parse(account, got[0]), got[1])
        for account, got in _read(client, keys, accounts).items()
    }


def read_folds_apart(
    client: redis.Redis, keys: Keys, accounts: Iterable[str]
) -> tuple[dict[str, Fold | None], dict[str, str]]:
    """read_folds, with each account whose projection is damaged set apart, with why."""
    todo = list(accounts)
    try:
        return read_folds(client, keys, todo), {}
    except CorruptProjection:
        pass  # one read per account, to tell which
    folds: dict[str, Fold | None] = {}
    damaged: dict[str, str] = {}
    for account in todo:
        try:
            folds.update(read_folds(client, keys, (account,)))
        except CorruptProjection as e:
            damaged[account] = str(e)
    return folds, damaged


def read_fold(client: redis.Redis, keys: Keys, account: str) -> Fold | None:
    """The account's Fold as the projection holds it; None if the account is unknown."""
    return read_folds(client, keys, (account,))[account]


def read_document_json(client: redis.Redis, keys: Keys, account: str) -> tuple[bytes | None, int]:
    """The account's document as JSON (exactly `orjson.dumps(doc)`) and its version;
    (None, 0) when unknown. Cheaper than read_document when the answer is JSON anyway."""
    got = _read(client, keys, (account,))[account]
    return (None, 0) if got is None else (got[0], got[2])


def read_document(
    client: redis.Redis, keys: Keys, account: str
) -> tuple[dict[str, Any] | None, int]:
    """The account's document and version; (None, 0) when the projection does not know it."""
    raw, version = read_document_json(client, keys, account)
    return (None, 0) if raw is None else (_parse(account, raw), version)


def account_version(client: redis.Redis, keys: Keys, account: str) -> int:
    """The version the projection holds for the account (0 if unknown)."""
    try:
        raw = client.hget(keys.meta(account), VERSION)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot read the Redis projection: {e}") from e
    return int(cast(bytes, raw)) if raw is not None else 0
