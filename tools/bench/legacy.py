"""A faithful copy of the scheme tradelog replaces, and realistic documents for it.

The legacy service kept one indented JSON file per account,
`data/negotiations/<steamId>.json`, and did every change as read-modify-write
under a `filelock.FileLock`: lock, read, parse, merge, `json.dumps(indent=2)`,
write a temp file, fsync, rename. Nothing here is optimised on purpose: the
bench's "vs_legacy" ratios are only honest if this is what the bots ran.

`make_document` builds the bots' typical account (200 offers with items, 50
friends with messages: ~300 KB indented), seeded, so every scenario and every
run compares against the same bytes.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock

__all__ = ["LegacyStore", "make_document", "make_offer", "steam_ids"]

_BASE_TIME = datetime(2025, 8, 12, 12, 0, tzinfo=UTC)
_ITEM_NAMES = (
    "AK-47 | Redline (Field-Tested)",
    "AWP | Asiimov (Battle-Scarred)",
    "Sticker | Crown (Foil)",
    "Revolution Case",
    "M4A1-S | Printstream (Minimal Wear)",
    "Glock-18 | Water Elemental (Factory New)",
)
_STATES = ("Active", "Accepted", "Declined", "Canceled", "Expired", "Countered", "InEscrow")
_WORDS = ("hi", "hello", "trade?", "ok", "no thanks", "what do you offer?", "deal", "gl hf", "🙂")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """`new Date().toISOString()`: what the legacy service stamped."""
    return _iso(datetime.now(UTC))


def steam_ids(count: int, start: int = 76561199027634480) -> list[str]:
    """`count` distinct, valid SteamID64s (spaced so they spread over partitions)."""
    return [str(start + 7919 * i) for i in range(count)]


def _item(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "assetid": str(30_000_000_000 + n),
        "appid": 730,
        "contextid": "2",
        "amount": 1,
        "market_hash_name": rng.choice(_ITEM_NAMES),
        "name": "x",
        "type": "Base Grade Container",
    }


def make_offer(rng: random.Random, offer_id: int, friend: str, items: int = 2) -> dict[str, Any]:
    """One trade offer as the bots send it to atomic-upsert (before the merge adds history).

    Half of them carry item counts instead of lists, as automated actions write.
    """
    created = _BASE_TIME + timedelta(minutes=offer_id % 100_000)
    give: Any = rng.randint(1, items)
    take: Any = rng.randint(1, items)
    if rng.random() < 0.5:
        give = [_item(rng, offer_id * 10 + i) for i in range(give)]
        take = [_item(rng, offer_id * 10 + 5 + i) for i in range(take)]
    return {
        "trade_offer_id": str(offer_id),
        "friend_steam_id": friend,
        "is_our_offer": rng.random() < 0.5,
        "state": "Active",
        "created_at": _iso(created),
        "updated_at": _iso(created),
        "expires_at": _iso(created + timedelta(days=14)),
        "items_to_give": give,
        "items_to_receive": take,
        "message": rng.choice(_WORDS),
        "confirmation_method": rng.choice((0, 2)),
    }


def _friend_record(rng: random.Random, account: str, friend: str, messages: int) -> dict[str, Any]:
    start = _BASE_TIME + timedelta(hours=rng.randrange(1, 500))
    msgs = []
    for i in range(messages):
        at = _iso(start + timedelta(minutes=i))
        outgoing = i % 2 == 0
        msgs.append(
            {
                "id": f"msg_{int(start.timestamp() * 1000) + i}_{rng.getrandbits(36):09x}",
                "timestamp": at,
                "direction": "outgoing" if outgoing else "incoming",
                "message": " ".join(rng.choices(_WORDS, k=rng.randint(1, 6))),
                "sender_steam_id": account if outgoing else friend,
                ("sent_at" if outgoing else "received_at"): at,
            }
        )
    return {
        "friend_steam_id": friend,
        "state": rng.choice(("awaiting_reply", "waiting_for_reply", "negotiating", "closed")),
        "followUpCount": rng.randint(0, 3),
        "created_at": _iso(start),
        "updated_at": msgs[-1]["timestamp"] if msgs else _iso(start),
        "messages": msgs,
        "objective": None,
        "source": "reserve_pipeline",
        "inventory_private": False,
        "inventory": (
            [_item(rng, 70_000_000 + rng.randrange(10**6)) for _ in range(2)]
            if rng.random() < 0.3
            else None
        ),
        "language": rng.choice((None, "en", {"code": "en", "confidence": 0.92})),
        "friend_steam_username": f"nick{rng.randrange(10**4)}",
        "redirected_to": [],
        "referred_from_messages": [],
    }


def make_document(
    account: str, offers: int = 200, friends: int = 50, messages: int = 4, seed: int = 7
) -> dict[str, Any]:
    """A realistic account document; the defaults give ~296 KiB with indent=2."""
    rng = random.Random(f"{seed}:{account}")
    friend_ids = steam_ids(friends, start=76561198123456789)
    trade_offers = []
    for i in range(offers):
        offer = make_offer(rng, 8_189_748_113 + i, rng.choice(friend_ids))
        state = rng.choice(_STATES)
        history = [{"state": "Active", "timestamp": offer["created_at"]}]
        if state != "Active":
            history.append({"state": state, "timestamp": offer["updated_at"]})
        trade_offers.append({**offer, "state": state, "state_history": history})
    return {
        "account_steam_id": account,
        "account_username": f"bot{rng.randrange(100):02d}",
        "our_steam_login": f"bot{rng.randrange(100):02d}login",
        "created_at": _iso(_BASE_TIME),
        "updated_at": _iso(_BASE_TIME + timedelta(days=3)),
        "our_inventory": [_item(rng, 90_000_000 + i) for i in range(20)],
        "our_inventory_updated_at": _iso(_BASE_TIME + timedelta(days=2)),
        "trade_offers": trade_offers,
        "trade_offers_updated_at": _iso(_BASE_TIME + timedelta(days=3)),
        "negotiations": {f: _friend_record(rng, account, f, messages) for f in friend_ids},
    }


def _default_document(account: str) -> dict[str, Any]:
    now = now_iso()
    return {
        "account_steam_id": account,
        "account_username": None,
        "created_at": now,
        "updated_at": now,
        "our_inventory": None,
        "our_inventory_updated_at": None,
        "trade_offers": [],
        "trade_offers_updated_at": None,
        "negotiations": {},
    }


class LegacyStore:
    """The legacy per-account JSON files, with the legacy upsert and read."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "negotiations"
        self.dir.mkdir(parents=True, exist_ok=True)
        # One lock object per account, kept like a long-running service would.
        self._locks: dict[str, FileLock] = {}

    def path(self, account: str) -> Path:
        return self.dir / f"{account}.json"

    def save(self, account: str, doc: dict[str, Any]) -> None:
        """Write a whole document the legacy way (seeding a bench, or POST /negotiations)."""
        with self._lock(account):
            self._write(account, doc)

    def seed(self, accounts: list[str], template: dict[str, Any]) -> int:
        """Give each account a copy of `template` (its id swapped in); return the file size.

        Dumped once and copied: a scenario's set-up should not take as long as its run.
        """
        owner = template["account_steam_id"]
        text = json.dumps(template, indent=2)
        for account in accounts:
            self.path(account).write_text(text.replace(owner, account), encoding="utf-8")
        return len(text.encode())

    def read(self, account: str) -> dict[str, Any]:
        """The legacy GET: read the file and parse it (no lock, as the service did)."""
        try:
            text = self.path(account).read_text(encoding="utf-8")
        except FileNotFoundError:
            return _default_document(account)
        doc: dict[str, Any] = json.loads(text)
        return doc

    def upsert_offer(self, account: str, offer: dict[str, Any]) -> str:
        """The legacy atomic-upsert-trade-offer; returns "added" or "updated"."""
        with self._lock(account):
            doc = self.read(account)
            now = now_iso()
            offers: list[dict[str, Any]] = doc.setdefault("trade_offers", [])
            oid = offer["trade_offer_id"]
            at = next((i for i, o in enumerate(offers) if o.get("trade_offer_id") == oid), None)
            if at is not None:
                old = offers[at]
                merged = {**old, **offer}
                if "state" in offer and offer["state"] != old.get("state"):
                    history = list(old.get("state_history") or [])
                    merged["state_history"] = [
                        *history,
                        {"state": offer["state"], "timestamp": now},
                    ]
                offers[at] = merged
                operation = "updated"
            else:
                new = dict(offer)
                new.setdefault("created_at", now)
                new.setdefault("state", "Active")
                new.setdefault("state_history", [{"state": new["state"], "timestamp": now}])
                offers.append(new)
                operation = "added"
            doc["updated_at"] = now
            doc["trade_offers_updated_at"] = now
            self._write(account, doc)
            return operation

    def _lock(self, account: str) -> FileLock:
        lock = self._locks.get(account)
        if lock is None:
            lock = self._locks[account] = FileLock(str(self.path(account)) + ".lock")
        return lock

    def _write(self, account: str, doc: dict[str, Any]) -> None:
        path = self.path(account)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
