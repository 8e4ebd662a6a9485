"""What the writer knows of each account to decide a command: the command side.

Built by observing every event of a partition in log order, both the writer's
own and those other processes appended (read under the lock before each
batch), so decisions (versions, added-or-updated, which friends are present,
idempotent retries) are right however many processes append.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from .records import (
    FRIEND_NEGOTIATION_UPSERTED,
    FRIENDS_REMOVED,
    LEGACY_IMPORTED,
    NEGOTIATIONS_SAVED,
    TRADE_OFFER_UPSERTED,
    StoredEvent,
)

__all__ = [
    "RECEIPT_WINDOW", "AccountState", "Findings", "NoOp", "PartitionState", "Receipt",
]  # fmt: skip

# How long an idempotency key answers a retry, by the log's own times: clients retry
# within seconds, and a key kept for the log's whole life would make memory grow with it.
RECEIPT_WINDOW = timedelta(hours=24)


@dataclass(slots=True)
class AccountState:
    version: int = 0
    offers: dict[str, Any] = field(default_factory=dict)  # offer id -> its state
    friends: dict[str, Any] = field(default_factory=dict)  # friend id -> its record's state
    import_sha: str | None = None  # sha256 of the last imported legacy file


# Not frozen: a frozen dataclass sets each field through object.__setattr__, ~1 us
# more per object, and one of these is made per appended or read event.
@dataclass(slots=True)
class Findings:
    """What a command found when it was applied to the command side."""

    operation: str
    previous_state: Any = None
    state: Any = None
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an append returned, kept per idempotency key to answer a retry.

    Where the event went, not the event: its data can be a whole document.
    """

    event_id: str
    type: str
    version: int
    offset: int
    ts: str
    findings: Findings

    def event(self, account: str, partition: int) -> StoredEvent:
        """The appended event as far as an answer needs it: all but its data and meta."""
        return StoredEvent(
            self.event_id, account, self.version, partition, self.offset, self.type, self.ts, {}
        )


@dataclass(frozen=True, slots=True)
class NoOp:
    """A keyed write that appended nothing (a removal of absent friends, an unchanged
    import): what it asked and found, to answer its retry alike."""

    type: str
    asked: str  # a digest of the friends asked to remove, or the imported file's sha256
    findings: Findings
    ts: str  # when it was decided: it answers retries for RECEIPT_WINDOW, as a receipt


# No-op receipts kept per partition (a digest each, not what was asked: a removal may
# name 400,000 friends). No event carries them: the processes share them through a
# file beside the log (noop_receipts.py).
NOOPS_KEPT = 10_000


def _friends_of(doc: dict[str, Any]) -> dict[str, Any]:
    negotiations = doc.get("negotiations") or {}
    return {fid: (rec.get("state") if isinstance(rec, dict) else None)
            for fid, rec in negotiations.items()}  # fmt: skip


def _offers_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {o["trade_offer_id"]: o.get("state") for o in doc.get("trade_offers") or ()}


class PartitionState:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountState] = {}
        # In log order, so the oldest leave first once out of the window.
        self.receipts: OrderedDict[tuple[str, str], Receipt] = OrderedDict()
        self.noops: OrderedDict[tuple[str, str], NoOp] = OrderedDict()
        self.fresh_noops: list[tuple[str, str, NoOp]] = []  # decided here, not yet shared
        self._cutoff: tuple[str, str] = ("", "")  # (minute of a ts, the window's start then)

    def account(self, account: str) -> AccountState:
        state = self.accounts.get(account)
        if state is None:
            state = self.accounts[account] = AccountState()
        return state

    def noted(self, account: str, key: str, noop: NoOp, *, shared: bool = False) -> None:
        """Remember a keyed write that appended nothing (the oldest go past NOOPS_KEPT,
        or out of the window); `shared`: another process's (or an earlier run's), read
        from the partition's receipts, not one for this process to share."""
        if not shared:
            self.fresh_noops.append((account, key, noop))
        self.noops[(account, key)] = noop
        self.noops.move_to_end((account, key))
        if len(self.noops) > NOOPS_KEPT:
            self.noops.popitem(last=False)
        _drop_before(self.noops, self._window_start(noop.ts))

    def noop(self, account: str, key: str, ts: str) -> NoOp | None:
        """The no-op remembered under `key`, unless it is out of the window at `ts`."""
        found = self.noops.get((account, key))
        cutoff = self._window_start(ts)
        if found is not None and cutoff is not None and found.ts[:16] < cutoff:
            del self.noops[(account, key)]
            return None
        return found

    def observe(self, event: StoredEvent) -> Findings:
        """Fold one event into the command side; return what it found."""
        acct = self.account(event.account)
        data = event.data
        kind = event.type
        if kind == TRADE_OFFER_UPSERTED:
            offer = data["offer"]
            oid = offer["trade_offer_id"]
            existed = oid in acct.offers
            previous = acct.offers.get(oid)
            state = offer.get("state", previous if existed else "Active")
            acct.offers[oid] = state
            findings = Findings("updated" if existed else "added", previous, state)
        elif kind == FRIEND_NEGOTIATION_UPSERTED:
            fid = data["friend_steam_id"]
            existed = fid in acct.friends
            previous = acct.friends.get(fid)
            state = data["negotiation"].get("state")
            acct.friends[fid] = state
            findings = Findings("updated" if existed else "created", previous, state)
        elif kind == FRIENDS_REMOVED:
            removed = tuple(f for f in data["friend_steam_ids"] if f in acct.friends)
            previous = acct.friends.get(removed[0]) if len(removed) == 1 else None
            for fid in removed:
                del acct.friends[fid]
            findings = Findings("removed", previous, None, removed)
        elif kind in (NEGOTIATIONS_SAVED, LEGACY_IMPORTED):
            doc = data["document"] if kind == LEGACY_IMPORTED else data
            acct.offers = _offers_of(doc)
            acct.friends = _friends_of(doc)
            if kind == LEGACY_IMPORTED:
                acct.import_sha = data["source"]["sha256"]
            findings = Findings("imported" if kind == LEGACY_IMPORTED else "saved")
        else:
            findings = Findings("unknown")
        acct.version = event.version
        key = event.meta.get("idempotency_key")
        if key:
            receipt = Receipt(event.id, kind, event.version, event.offset, event.ts, findings)
            self.receipts[(event.account, key)] = receipt
            self.receipts.move_to_end((event.account, key))
        if self.receipts:
            self._expire(event.ts)
        return findings

    def _window_start(self, ts: str) -> str | None:
        """The minute RECEIPT_WINDOW before `ts` ("YYYY-MM-DDTHH:MM": the window moves by
        minutes); None if `ts` is not a time the writer stamps."""
        minute = ts[:16]
        if self._cutoff[0] != minute:
            try:
                start = datetime.fromisoformat(minute) - RECEIPT_WINDOW
            except ValueError:
                return None
            self._cutoff = (minute, start.strftime("%Y-%m-%dT%H:%M"))
        return self._cutoff[1]

    def _expire(self, ts: str) -> None:
        """Forget the receipts of events older than RECEIPT_WINDOW before `ts`."""
        _drop_before(self.receipts, self._window_start(ts))


_Kept = TypeVar("_Kept", Receipt, NoOp)


def _drop_before(kept: OrderedDict[tuple[str, str], _Kept], cutoff: str | None) -> None:
    """Forget the oldest (first) of `kept` decided before the minute `cutoff` (None: keep
    everything, not a time the writer stamps)."""
    while cutoff is not None and kept and next(iter(kept.values())).ts[:16] < cutoff:
        kept.popitem(last=False)
