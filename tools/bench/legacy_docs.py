"""Seeded, realistic documents for the legacy scheme: accounts, trade offers, SteamIDs.

`make_document` builds the bots' typical account (200 offers with items, 50
friends with messages: ~300 KB indented), seeded, so every scenario and every
run compares against the same bytes. `make_offer` is one offer as the bots
send it, which the write workloads reuse; `steam_ids` spaces valid SteamID64s
so they spread over the partitions.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from .legacy import iso

__all__ = ["make_document", "make_offer", "steam_ids"]

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
        "created_at": iso(created),
        "updated_at": iso(created),
        "expires_at": iso(created + timedelta(days=14)),
        "items_to_give": give,
        "items_to_receive": take,
        "message": rng.choice(_WORDS),
        "confirmation_method": rng.choice((0, 2)),
    }


def _friend_record(rng: random.Random, account: str, friend: str, messages: int) -> dict[str, Any]:
    start = _BASE_TIME + timedelta(hours=rng.randrange(1, 500))
    msgs = []
    for i in range(messages):
        at = iso(start + timedelta(minutes=i))
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
        "created_at": iso(start),
        "updated_at": msgs[-1]["timestamp"] if msgs else iso(start),
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
        "created_at": iso(_BASE_TIME),
        "updated_at": iso(_BASE_TIME + timedelta(days=3)),
        "our_inventory": [_item(rng, 90_000_000 + i) for i in range(20)],
        "our_inventory_updated_at": iso(_BASE_TIME + timedelta(days=2)),
        "trade_offers": trade_offers,
        "trade_offers_updated_at": iso(_BASE_TIME + timedelta(days=3)),
        "negotiations": {f: _friend_record(rng, account, f, messages) for f in friend_ids},
    }
