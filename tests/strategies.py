"""Hypothesis strategies for account documents and event payloads, shared by the tests.

Everything drawn here passes the writer's input rules (eventlog.events), so a
test may feed it to the writer, the fold or the API alike. Documents are open
and sparse: fields come in random order, with extra client fields and mixed types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "EVENT_KINDS",
    "OFFER_STATE_NAMES",
    "documents",
    "event_sequences",
    "friend_records",
    "json_values",
    "offer_ids",
    "offers",
    "steam_ids",
    "timestamps",
]

STEAM_ID_MIN = 76561197960265729
STEAM_ID_MAX = 76561202255233023

OFFER_STATE_NAMES = (
    "Invalid",
    "Active",
    "Accepted",
    "Countered",
    "Expired",
    "Canceled",
    "Declined",
    "InvalidItems",
    "CreatedNeedsConfirmation",
    "CanceledBySecondFactor",
    "InEscrow",
)

EVENT_KINDS = (
    "NegotiationsSaved",
    "TradeOfferUpserted",
    "FriendNegotiationUpserted",
    "FriendsRemoved",
    "LegacyImported",
)

# Field names the strategies set themselves; extra client fields avoid them.
_OFFER_KEYS = frozenset(
    {"trade_offer_id", "friend_steam_id", "state", "updated_at", "created_at", "state_history"}
)
_DOC_KEYS = frozenset(
    {"account_steam_id", "trade_offers", "negotiations", "version", "created_at", "updated_at"}
)
_FRIEND_KEYS = frozenset({"friend_steam_id"})


def steam_ids() -> st.SearchStrategy[str]:
    """Valid SteamID64 strings (17 digits, inside the individual-account range)."""
    return st.integers(STEAM_ID_MIN, STEAM_ID_MAX).map(str)


def offer_ids() -> st.SearchStrategy[str]:
    """Trade offer ids: decimal strings of up to 20 ASCII digits (leading zeros too)."""
    return st.one_of(
        st.integers(1, 99_999_999_999).map(str),
        st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    )


def _keys() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["name", "note", "count", "items", "language", "meta", "x"]),
        st.text(max_size=8),
    )


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Open JSON values: nested dicts/lists of str/int/finite float/bool/None, empties too."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(_keys(), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def timestamps() -> st.SearchStrategy[Any]:
    """`updated_at`-like values: ISO with Z/offset, unix seconds or ms, and junk."""
    moments = st.integers(946_684_800_000, 4_102_444_800_000)  # 2000..2100, in ms

    def iso(ms: int, fraction: bool, offset: str) -> str:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if fraction:
            text += f".{ms % 1000:03d}"
        return text + offset

    return st.one_of(
        st.builds(iso, moments, st.booleans(), st.sampled_from(["Z", "+00:00", "+02:00"])),
        moments.map(lambda ms: str(ms // 1000)),
        moments.map(lambda ms: f"{ms // 1000}.{ms % 1000:03d}"),
        moments,
        moments.map(lambda ms: ms / 1000),
        st.sampled_from([None, "", "soon", "2025-13-45", {}, [], True]),
    )


def _ordered(
    fixed: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]],
    reserved: frozenset[str],
) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with the fixed and some optional fields plus extra ones, in random key order."""
    extra = st.dictionaries(_keys().filter(lambda k: k not in reserved), json_values(6), max_size=3)
    parts = st.tuples(st.fixed_dictionaries(fixed, optional=optional), extra)
    items = parts.map(lambda p: [*p[0].items(), *p[1].items()])
    return items.flatmap(st.permutations).map(dict)


def _history() -> st.SearchStrategy[list[dict[str, Any]]]:
    entry = st.fixed_dictionaries(
        {"state": st.sampled_from(OFFER_STATE_NAMES), "timestamp": timestamps()}
    )
    return st.lists(entry, max_size=3)


def _items() -> st.SearchStrategy[Any]:
    # The bots store either the item list or, in older files, just a count.
    item = st.fixed_dictionaries(
        {"assetid": st.integers(1, 10**11).map(str), "appid": st.just(730)},
        optional={"amount": st.integers(1, 5), "market_hash_name": st.text(max_size=10)},
    )
    return st.one_of(st.integers(0, 50), st.lists(item, max_size=3))


def offers(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Trade offers as clients send them: an id plus any of the usual and extra fields."""
    return _ordered(
        {"trade_offer_id": offer_ids() if ids is None else ids},
        {
            "friend_steam_id": steam_ids(),
            "state": st.sampled_from([*OFFER_STATE_NAMES, "Unknown(12)"]),
            "updated_at": timestamps(),
            "created_at": timestamps(),
            "state_history": _history(),
            "is_our_offer": st.booleans(),
            "items_to_give": _items(),
            "items_to_receive": _items(),
        },
        _OFFER_KEYS | {"is_our_offer", "items_to_give", "items_to_receive"},
    )


def friend_records(friend: str) -> st.SearchStrategy[dict[str, Any]]:
    """One friend's negotiation record, stored under `friend`."""
    message = st.fixed_dictionaries(
        {"direction": st.sampled_from(["incoming", "outgoing"]), "message": st.text(max_size=20)},
        optional={"timestamp": timestamps()},
    )
    return _ordered(
        {},
        {
            "friend_steam_id": st.just(friend),
            "state": st.sampled_from(["initiating", "awaiting_reply", "unknown", "accepted"]),
            "followUpCount": st.integers(0, 5),
            "messages": st.lists(message, max_size=3),
            "language": st.one_of(st.none(), st.text(max_size=5), json_values(4)),
            "inventory": st.one_of(st.none(), st.lists(json_values(4), max_size=3)),
            "redirected_to": st.just([]),
        },
        _FRIEND_KEYS | {"state", "followUpCount", "messages", "language", "inventory"},
    )


def _negotiations(
    friends: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    ids = st.lists(steam_ids() if friends is None else friends, max_size=4, unique=True)
    return ids.flatmap(
        lambda fs: st.tuples(*(friend_records(f) for f in fs)).map(
            lambda records: dict(zip(fs, records, strict=True))
        )
    )


def documents(
    account: str,
    offer_pool: st.SearchStrategy[str] | None = None,
    friend_pool: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Whole account documents for `account`, sparse, with fields in random order."""
    return _ordered(
        {},
        {
            "account_steam_id": st.just(account),
            "account_username": st.one_of(st.none(), st.text(max_size=8)),
            "our_steam_login": st.text(max_size=8),
            "created_at": timestamps(),
            "updated_at": timestamps(),
            "our_inventory": st.one_of(st.none(), st.lists(json_values(4), max_size=3)),
            "our_inventory_updated_at": timestamps(),
            # A null collection of the client's comes back as null.
            "trade_offers": st.none()
            | st.lists(offers(offer_pool), max_size=5, unique_by=lambda o: o["trade_offer_id"]),
            "trade_offers_updated_at": timestamps(),
            "negotiations": st.none() | _negotiations(friend_pool),
            "version": st.integers(0, 100),
        },
        _DOC_KEYS | {"account_username", "our_inventory", "trade_offers_updated_at"},
    )


@st.composite
def event_sequences(
    draw: st.DrawFn, account: str, max_size: int = 8
) -> list[tuple[str, dict[str, Any]]]:
    """Lists of (event type, data) for one account, drawing ids from small pools so
    upserts merge into existing offers and removals hit existing friends."""
    offer_pool = st.sampled_from(draw(st.lists(offer_ids(), min_size=1, max_size=4, unique=True)))
    friend_pool = st.sampled_from(draw(st.lists(steam_ids(), min_size=1, max_size=4, unique=True)))
    source = st.fixed_dictionaries(
        {
            "file": st.just(f"{account}.json"),
            "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        }
    )
    upsert_friend = friend_pool.flatmap(
        lambda f: friend_records(f).map(lambda r: {"friend_steam_id": f, "negotiation": r})
    )
    payloads: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "NegotiationsSaved": documents(account, offer_pool, friend_pool),
        "TradeOfferUpserted": offers(offer_pool).map(lambda o: {"offer": o}),
        "FriendNegotiationUpserted": upsert_friend,
        "FriendsRemoved": st.lists(friend_pool, min_size=1, max_size=3, unique=True).map(
            lambda ids: {"friend_steam_ids": ids}
        ),
        "LegacyImported": st.tuples(documents(account, offer_pool, friend_pool), source).map(
            lambda p: {"document": p[0], "source": p[1]}
        ),
    }
    kinds = draw(st.lists(st.sampled_from(EVENT_KINDS), min_size=1, max_size=max_size))
    return [(kind, draw(payloads[kind])) for kind in kinds]
