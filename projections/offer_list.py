"""An account's `trade_offers`: kept in (score, id) order, upserted by id.

Every projection keeps the list in that order (the Redis copy's zset gives the
same one), so an upsert finds its offer by a scan in C or a bisection and puts
it back in its new place with one insertion, never a sort. A state change is
recorded in the offer's `state_history`. Nothing is changed in place: the lists
and offers made are new, the rest is shared with the version before (fold.py).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from operator import itemgetter
from typing import Any

from .times import offer_score

__all__ = ["changed", "find", "ordered", "sort_key", "upsert"]

_ID = itemgetter("trade_offer_id")
_SCAN = 32  # up to this length scans in C (map, count, index) beat a bisect calling Python keys


def sort_key(offer_id: str, score: int) -> tuple[int, int, str]:
    """The offers' order: score, then the id as a number, then as a string (which breaks
    ties between ids like "7" and "07", so the order is total)."""
    return score, int(offer_id), offer_id


def _order(offer: dict[str, Any], scores: dict[str, int]) -> tuple[int, int, str]:
    oid: str = offer["trade_offer_id"]
    return scores[oid], int(oid), oid  # sort_key, inline: it runs for every comparison


def ordered(
    offers: list[dict[str, Any]], fallback: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A whole document's offers in order, and their scores (`fallback`: the event's
    time in ms, for an offer that carries none)."""
    scores = {o["trade_offer_id"]: offer_score(o, fallback) for o in offers}
    return sorted(offers, key=lambda o: _order(o, scores)), scores


def changed(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> bool:
    """Whether two lists hold different offers, by id and content, whatever their order."""
    return len(before) != len(after) or (
        {o["trade_offer_id"]: o for o in before} != {o["trade_offer_id"]: o for o in after}
    )


def _history(old: Any, entry: dict[str, Any]) -> list[Any]:
    """`state_history` with `entry` appended; a value of the client's that is not a list
    is kept as the first element, not taken apart."""
    if isinstance(old, list):
        return [*old, entry]
    return [entry] if old is None else [old, entry]


def find(offers: list[dict[str, Any]], scores: dict[str, int], oid: str) -> int | None:
    """The index of the offer with id `oid`, or None.

    The list is in (score, id) order but in one case: a document with two offers of one
    id (never validated in, but a log is data) gives both one score, so an upsert of one
    leaves the other out of place. Then the copy found is the bisection's whatever the
    list's length: the fold does not depend on where scanning stops paying.
    """
    if oid not in scores:
        return None
    if len(offers) <= _SCAN:
        ids = list(map(_ID, offers))
        if ids.count(oid) == 1:
            return ids.index(oid)
    at = bisect_left(offers, sort_key(oid, scores[oid]), key=lambda o: _order(o, scores))
    if at < len(offers) and offers[at]["trade_offer_id"] == oid:
        return at
    # Out of order (by a duplicate id, or in a Fold built outside apply): a scan.
    return next((i for i, o in enumerate(offers) if o["trade_offer_id"] == oid), None)


def upsert(
    offers: list[dict[str, Any]] | None,
    scores: dict[str, int],
    new: dict[str, Any],
    ts: str,
    fallback: int,
    rules: int,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The list and scores after upserting `new` at time `ts` (`fallback`: that time in
    ms; `rules`: the event's, see eventlog.records.RULES)."""
    oid: str = new["trade_offer_id"]
    offers = list(offers or ())
    at = find(offers, scores, oid)
    if at is not None:
        old = offers.pop(at)
        merged = {**old, **new}
        if "state" in new and new["state"] != old.get("state"):
            entry = {"state": new["state"], "timestamp": ts}
            if rules > 1:
                merged["state_history"] = _history(merged.get("state_history"), entry)
            else:  # as the projections folded it then: a string taken apart
                merged["state_history"] = [*list(merged.get("state_history") or []), entry]
    else:
        merged = dict(new)
        merged.setdefault("created_at", ts)
        merged.setdefault("state", "Active")
        if "state_history" not in merged:
            merged["state_history"] = [{"state": merged["state"], "timestamp": ts}]
    scores = dict(scores)
    scores[oid] = offer_score(merged, fallback)
    insort(offers, merged, key=lambda o: _order(o, scores))
    return offers, scores
