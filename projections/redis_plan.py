"""Planning: from an account's cached state and its new events to script calls.

Pure (no Redis): the Python fold computes each new state, and the change is
expressed in as few calls as possible: a run of same-kind events is one call
carrying only what the run changed (its offers, its friends, the meta fields
that moved), and a whole-document event makes the account's whole batch one
save of the final document. Each call carries the version it was computed
from, for the script's compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventlog.keys import Keys
from eventlog.records import StoredEvent

from .fold import Fold, apply
from .redis_calls import friends_removed_call, friends_upserted_call, offers_call, save_call
from .redis_scripts import Call

__all__ = ["Plan", "plan", "version_of"]

log = logging.getLogger("tradelog.projector.redis")

_WHOLE = frozenset(("NegotiationsSaved", "LegacyImported"))
_OFFER, _FRIEND = "TradeOfferUpserted", "FriendNegotiationUpserted"


@dataclass(slots=True)
class Plan:
    calls: list[Call]
    state: Fold | None  # after the calls
    done: list[StoredEvent]  # handled once the calls succeed (applied or already there)
    rest: list[StoredEvent] = field(default_factory=list)  # from a gap or poison event on
    applied: int = 0
    poison: str | None = None  # why rest[0] cannot be applied
    follow: bool = False  # the account is parked: the calls add to its waiting list


def version_of(state: Fold | None) -> int:
    return 0 if state is None else int(state.doc["version"])


def _position(event: StoredEvent) -> str:
    return f"{event.partition}:{event.offset}"


def plan(keys: Keys, account: str, state: Fold | None, events: Sequence[StoredEvent]) -> Plan:
    """The calls that take the account from `state` through `events` (in version order).

    Events at or below the state's version are done already (a redelivery). The plan
    stops at a version gap or at an event the fold cannot apply (a poison event):
    those and the later events are left in `rest`, for the caller to settle.
    """
    base_state = state
    base = held = version_of(state)
    done: list[StoredEvent] = []
    applied: list[tuple[StoredEvent, Fold]] = []
    for i, event in enumerate(events):
        if event.version <= held:
            done.append(event)
            continue
        if event.version != held + 1:
            calls = _calls(keys, account, base_state, base, applied)
            return Plan(calls, state, done, list(events[i:]), len(applied))
        try:
            state = apply(state, event)
        except Exception as e:  # a poison event: a bug in the fold, never bad input
            log.exception("cannot apply %s v%d: parking it", account, event.version)
            calls = _calls(keys, account, base_state, base, applied)
            why = f"{type(e).__name__}: {e}"
            return Plan(calls, state, done, list(events[i:]), len(applied), why)
        done.append(event)
        applied.append((event, state))
        held = event.version
    return Plan(_calls(keys, account, base_state, base, applied), state, done, [], len(applied))


def _calls(
    keys: Keys, account: str, state: Fold | None, base: int, applied: list[tuple[StoredEvent, Fold]]
) -> list[Call]:
    if not applied:
        return []
    if any(event.type in _WHOLE for event, _ in applied):
        last, end = applied[-1]
        return [save_call(keys, account, state, end, base, _position(last))]
    calls: list[Call] = []
    i = 0
    while i < len(applied):
        kind = applied[i][0].type
        j = i
        while j + 1 < len(applied) and applied[j + 1][0].type == kind:
            j += 1
        last, end = applied[j]
        run = [event for event, _ in applied[i : j + 1]]
        pos = _position(last)
        call: Call | None
        if kind == _OFFER:
            ids = list(dict.fromkeys(e.data["offer"]["trade_offer_id"] for e in run))
            call = offers_call(keys, account, state, end, ids, base, pos)
        elif kind == _FRIEND:
            ids = list(dict.fromkeys(e.data["friend_steam_id"] for e in run))
            call = friends_upserted_call(keys, account, state, end, ids, base, pos)
        else:
            had = (state.doc["negotiations"] or {}) if state is not None else {}
            named = dict.fromkeys(f for e in run for f in e.data["friend_steam_ids"])
            ids = [f for f in named if f in had]
            call = friends_removed_call(keys, account, state, end, ids, base, pos)
        # A change a partial script cannot express (never expected) is saved whole.
        calls.append(call or save_call(keys, account, state, end, base, pos))
        state, base, i = end, last.version, j + 1
    return calls
