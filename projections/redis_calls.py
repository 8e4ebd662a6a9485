"""The calls: a change the fold computed, as a script's KEYS and ARGV.

Each builder takes the account's Fold before and after a run of events and sends only
what the run changed, laid out as the script's header in lua/ describes, so the scripts
pass arguments straight on to Redis commands. `Scripts` (redis_scripts) sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventlog.keys import Keys

from .fold import Fold
from .offer_list import find
from .redis_codec import Pairs, json_arg, meta_changes, meta_pairs, record_pairs
from .redis_scripts import REMOVE_FRIENDS, SAVE_DOCUMENT, UPSERT_FRIEND, UPSERT_OFFER, Call

__all__ = ["friends_removed_call", "friends_upserted_call", "offers_call", "save_call"]


def _head(base: int, version: int, position: str, meta: Pairs) -> list[Any]:
    # Every apply script's ARGV starts so: versions, position, the meta fields to set.
    return [base, version, position, len(meta), *meta]


def _offers(args: list[Any], offers: Sequence[Any], scores: dict[str, int]) -> None:
    # n, then (id, JSON) pairs for HSET, then (score, id) pairs for ZADD.
    ids = [o["trade_offer_id"] for o in offers]
    args.append(len(ids))
    for oid, offer in zip(ids, offers, strict=True):
        args += (oid, json_arg(offer))
    for oid in ids:
        args += (scores[oid], oid)


def _offer(offers: list[dict[str, Any]], scores: dict[str, int], oid: str) -> dict[str, Any]:
    """The offer `oid` of a Fold that holds it (the fold just upserted it)."""
    at = find(offers, scores, oid)
    if at is None:
        raise LookupError(f"offer {oid} is not in the account's fold")
    return offers[at]


def _friend_keys(keys: Keys, account: str, friend_ids: Sequence[str]) -> list[str]:
    """KEYS of the friend scripts: meta, the friends index, then each friend's hash."""
    return [keys.meta(account), keys.friends_index(account)] + [
        keys.friend(account, fid) for fid in friend_ids
    ]


def _opening(
    before: Fold | None, after: Fold, base: int, position: str
) -> tuple[list[Any], int] | None:
    """The arguments a partial call opens with and the version it brings the account
    to; None when the meta change cannot be expressed as field updates."""
    meta = meta_changes(before.doc if before else {}, after.doc)
    if meta is None:
        return None
    version = int(after.doc["version"])
    return _head(base, version, position, meta), version


def offers_call(
    keys: Keys, account: str, before: Fold | None, after: Fold,
    offer_ids: Sequence[str], base: int, position: str,
) -> Call | None:  # fmt: skip
    """atomic_upsert_trade_offer for offers changed between two Folds; None if inexpressible."""
    opening = _opening(before, after, base, position)
    if opening is None:
        return None
    args, version = opening
    offers, scores = after.doc["trade_offers"], after.scores
    _offers(args, [_offer(offers, scores, oid) for oid in offer_ids], scores)
    return Call(
        UPSERT_OFFER,
        [keys.meta(account), keys.offers(account), keys.offers_index(account)],
        args, account, base, version,
    )  # fmt: skip


def friends_upserted_call(
    keys: Keys, account: str, before: Fold | None, after: Fold,
    friend_ids: Sequence[str], base: int, position: str,
) -> Call | None:  # fmt: skip
    """upsert_friend for friend records replaced between two Folds; None if inexpressible."""
    opening = _opening(before, after, base, position)
    if opening is None:
        return None
    args, version = opening
    records = after.doc["negotiations"]
    for fid in friend_ids:
        pairs = record_pairs(records[fid])
        args += (fid, len(pairs))
        args += pairs
    call_keys = _friend_keys(keys, account, friend_ids)
    return Call(UPSERT_FRIEND, call_keys, args, account, base, version)


def friends_removed_call(
    keys: Keys, account: str, before: Fold | None, after: Fold,
    friend_ids: Sequence[str], base: int, position: str,
) -> Call | None:  # fmt: skip
    """bulk_remove_friends for friends gone between two Folds; None if inexpressible."""
    opening = _opening(before, after, base, position)
    if opening is None:
        return None
    args, version = opening
    args += friend_ids
    call_keys = _friend_keys(keys, account, friend_ids)
    return Call(REMOVE_FRIENDS, call_keys, args, account, base, version)


def save_call(
    keys: Keys, account: str, before: Fold | None, after: Fold, base: int, position: str
) -> Call:
    """save_document: replace the account's whole projection with `after`."""
    doc = after.doc
    version = int(doc["version"])
    args = _head(base, version, position, meta_pairs(doc))
    _offers(args, doc["trade_offers"] or (), after.scores)
    records: dict[str, Any] = doc["negotiations"] or {}
    args.append(len(records))
    for fid, record in records.items():
        pairs = record_pairs(record)
        args += (fid, len(pairs))
        args += pairs
    gone = [f for f in (before.doc["negotiations"] or () if before else ()) if f not in records]
    call_keys = [
        keys.meta(account),
        keys.offers(account),
        keys.offers_index(account),
        keys.friends_index(account),
    ]
    call_keys += [keys.friend(account, fid) for fid in (*records, *gone)]
    return Call(SAVE_DOCUMENT, call_keys, args, account, base, version)
