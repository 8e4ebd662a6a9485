"""The one fold of events into an account document, shared by every projection.

The file snapshot, the Redis projection, replay and verify all call `apply`, so
they cannot disagree. It is pure: the input Fold is never mutated; unchanged
sub-objects (offers, friend records) are shared between the old and new Fold.
Every timestamp comes from the event, never from a clock, so replays reproduce it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from eventlog._exceptions import ProjectionGap
from eventlog.records import StoredEvent

from . import offer_list
from .times import event_ms

__all__ = ["Fold", "apply", "default_document", "dumps", "fold_all", "should_apply"]

# Server-added top-level keys go after the client's keys, in this order, and only
# when missing: a Redis copy can then rebuild the same key order from the fields.
_SERVER_KEYS = (
    "account_steam_id",
    "created_at",
    "updated_at",
    "trade_offers",
    "trade_offers_updated_at",
    "negotiations",
    "version",
)


@dataclass(slots=True)
class Fold:
    doc: dict[str, Any]
    scores: dict[str, int]


def default_document(account: str, ts: str) -> dict[str, Any]:
    """What an account with no events reads as (version 0)."""
    return {
        "account_steam_id": account,
        "account_username": None,
        "created_at": ts,
        "updated_at": ts,
        "our_inventory": None,
        "our_inventory_updated_at": None,
        "trade_offers": [],
        "trade_offers_updated_at": None,
        "negotiations": {},
        "version": 0,
    }


def _held(state: Fold | None) -> int:
    return 0 if state is None else int(state.doc["version"])


def should_apply(state: Fold | None, event: StoredEvent) -> bool:
    """False for an event already applied (redelivery); ProjectionGap if one is missing."""
    held = _held(state)
    if event.version <= held:
        return False
    if event.version != held + 1:
        raise ProjectionGap(event.account, held, event.version)
    return True


def _set_server(doc: dict[str, Any], values: dict[str, Any]) -> None:
    # Assigning keeps a present key's position and appends a missing one, so walking
    # the canonical order yields "client order, then missing server keys in order".
    for key in _SERVER_KEYS:
        if key in values:
            doc[key] = values[key]


def _whole(state: Fold | None, event: StoredEvent, given: dict[str, Any], legacy: bool) -> Fold:
    ts, fallback = event.ts, event_ms(event)
    doc = dict(given)
    values: dict[str, Any] = {"version": event.version}
    if "account_steam_id" not in doc:
        values["account_steam_id"] = event.account
    if legacy:
        # A faithful import keeps the file's own times; the event only fills gaps.
        values.update({k: ts for k in ("created_at", "updated_at") if k not in doc})
    else:
        values["updated_at"] = ts
        if state is not None and _held(state) > 0:
            values["created_at"] = state.doc.get("created_at", ts)
        else:
            values["created_at"] = doc.get("created_at", ts)
    # A null the client sent stays null (the Redis copy marks it in the meta hash);
    # a missing collection is added empty.
    values["trade_offers"], scores = offer_list.ordered(doc.get("trade_offers") or [], fallback)
    rules = event.rules
    if rules > 1 and "trade_offers" in doc and doc["trade_offers"] is None:
        values["trade_offers"] = None
    if not legacy and rules > 1:
        _offers_time(state, doc, values, ts)
    if rules > 1 and "negotiations" in doc and doc["negotiations"] is None:
        values["negotiations"] = None
    else:
        negotiations = doc.get("negotiations") or {}
        values["negotiations"] = dict(negotiations if rules > 2 else sorted(negotiations.items()))
    _set_server(doc, values)
    return Fold(doc, scores)


def _offers_time(state: Fold | None, doc: dict[str, Any], values: dict[str, Any], ts: str) -> None:
    """A save's `trade_offers_updated_at`: the event's time if its offers differ from the
    account's (by id and content, whatever their order), else the client's value, or
    the account's where the client left it out. A first save keeps the client's value
    (a document brought over from elsewhere keeps its own time)."""
    after = values["trade_offers"] or []
    if state is None or _held(state) == 0:
        if after and "trade_offers_updated_at" not in doc:
            values["trade_offers_updated_at"] = ts
        return
    if offer_list.changed(state.doc.get("trade_offers") or [], after):
        values["trade_offers_updated_at"] = ts
    elif "trade_offers_updated_at" not in doc:
        with contextlib.suppress(KeyError):
            values["trade_offers_updated_at"] = state.doc["trade_offers_updated_at"]


def _upsert_offer(base: Fold, event: StoredEvent) -> Fold:
    ts = event.ts
    offers, scores = offer_list.upsert(
        base.doc["trade_offers"], base.scores, event.data["offer"], ts, event_ms(event), event.rules
    )
    doc = dict(base.doc)
    # Assigned in _SERVER_KEYS order, as _set_server would: the same key order results.
    doc["updated_at"] = ts
    doc["trade_offers"] = offers
    doc["trade_offers_updated_at"] = ts
    doc["version"] = event.version
    return Fold(doc, scores)


def _friends(base: Fold, event: StoredEvent) -> Fold:
    had = base.doc["negotiations"]
    negotiations = dict(had or {})
    if event.type == "FriendNegotiationUpserted":
        # A new friend comes last, an existing one keeps its place (as a JS object's
        # keys do: the legacy service's order).
        fid = event.data["friend_steam_id"]
        new_friend = fid not in negotiations
        negotiations[fid] = event.data["negotiation"]
        if new_friend and event.rules < 3:
            negotiations = dict(sorted(negotiations.items()))
    else:
        for fid in event.data["friend_steam_ids"]:
            negotiations.pop(fid, None)
        if had is None:  # nothing to remove from: a null of the client's stays
            negotiations = None  # type: ignore[assignment]
    doc = dict(base.doc)
    _set_server(
        doc, {"updated_at": event.ts, "negotiations": negotiations, "version": event.version}
    )
    return Fold(doc, base.scores)


def apply(state: Fold | None, event: StoredEvent) -> Fold:
    """The Fold after `event`; `state` is None for an account with no events yet.

    Raises ProjectionGap unless event.version is the next version (callers skip
    redeliveries with `should_apply` first) and ValueError for an unknown type.
    """
    held = _held(state)
    if event.version != held + 1:
        raise ProjectionGap(event.account, held, event.version)
    kind = event.type
    if kind == "NegotiationsSaved":
        return _whole(state, event, event.data, legacy=False)
    if kind == "LegacyImported":
        return _whole(state, event, event.data["document"], legacy=True)
    if kind not in ("TradeOfferUpserted", "FriendNegotiationUpserted", "FriendsRemoved"):
        raise ValueError(f"unknown event type {kind!r} (account {event.account} v{event.version})")
    base = state or Fold(default_document(event.account, event.ts), {})
    if kind == "TradeOfferUpserted":
        return _upsert_offer(base, event)
    return _friends(base, event)


def fold_all(events: Iterable[StoredEvent]) -> dict[str, Fold]:
    """Fold a log (in order) into one Fold per account; gaps and repeats raise."""
    folds: dict[str, Fold] = {}
    for event in events:
        folds[event.account] = apply(folds.get(event.account), event)
    return folds


def dumps(doc: dict[str, Any]) -> bytes:
    """The canonical bytes of a document, used to compare projections."""
    return orjson.dumps(doc)
