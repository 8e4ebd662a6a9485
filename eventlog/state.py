"""What the writer knows of each account to decide a command: the command side.

Built by observing every event of a partition in log order, both the writer's
own and those other processes appended (read under the lock before each
batch), so decisions (versions, added-or-updated, which friends are present,
idempotent retries) are right however many processes append.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .records import (
    FRIEND_NEGOTIATION_UPSERTED,
    FRIENDS_REMOVED,
    LEGACY_IMPORTED,
    NEGOTIATIONS_SAVED,
    TRADE_OFFER_UPSERTED,
    StoredEvent,
)

__all__ = ["AccountState", "Findings", "PartitionState", "Receipt"]


@dataclass(slots=True)
class AccountState:
    version: int = 0
    offers: dict[str, Any] = field(default_factory=dict)  # offer id -> its state
    friends: dict[str, Any] = field(default_factory=dict)  # friend id -> its record's state
    import_sha: str | None = None  # sha256 of the last imported legacy file


@dataclass(frozen=True, slots=True)
class Findings:
    """What a command found when it was applied to the command side."""

    operation: str
    previous_state: Any = None
    state: Any = None
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an append returned, kept per idempotency key to answer a retry."""

    event: StoredEvent
    findings: Findings


def _friends_of(doc: dict[str, Any]) -> dict[str, Any]:
    negotiations = doc.get("negotiations") or {}
    return {fid: (rec.get("state") if isinstance(rec, dict) else None)
            for fid, rec in negotiations.items()}  # fmt: skip


def _offers_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {o["trade_offer_id"]: o.get("state") for o in doc.get("trade_offers") or ()}


class PartitionState:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountState] = {}
        self.receipts: dict[tuple[str, str], Receipt] = {}

    def account(self, account: str) -> AccountState:
        state = self.accounts.get(account)
        if state is None:
            state = self.accounts[account] = AccountState()
        return state

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
            self.receipts[(event.account, key)] = Receipt(event, findings)
        return findings
