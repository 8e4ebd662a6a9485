"""The replay scenario's input: a log of the bots' event mix, written straight into segments.

The events are generated as JSON lines (`StoredEvent.encode`, correct offsets
and gap-free versions) into the partition segments, untimed: the writer's group
commit would spend minutes on what is only a scenario's input. The mix is what
the bots write: mostly TradeOfferUpserted (new offers with items, and state
changes of earlier ones), with friend upserts, removals and whole-document
saves between them. `bench replay` and biglog (`bench scale`, `bench memory`)
build their logs with `generate_log`.

In it an account is picked at random and saved with a chance of 1 in 200, so the
total of the documents at a point of the log is a random walk (one standard
deviation ~7% for 200 accounts: a document holds the offers of its events since
its last save). A `steady` log takes the accounts in turn and saves each every
200th event of its own, the accounts' turns spread evenly: past the first 200
events of every account its documents total about the same at any point (6.45
to 6.54 MiB from 100,000 to 300,000 events over 200 accounts, where the random
mix gave 11.0 to 13.8), so two such logs of different lengths end with
documents of about one size (bench memory compares them). They are about half
the random mix's: a document's age since its save is ~100 events, not ~200.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uuid_utils

from eventlog.marker import check_partitions
from eventlog.records import RULES, StoredEvent, partition_of
from eventlog.segments import partition_dir, segment_path

from .legacy_docs import make_offer, steam_ids

__all__ = ["generate_log"]

_STATES = ("Accepted", "Declined", "Canceled", "Expired", "InEscrow", "Countered")
_FRIEND_STATES = ("awaiting_reply", "negotiating", "closed")
_FLUSH_BYTES = 8 << 20
SAVE_EVERY = 200  # an account's events between whole-document saves (on average if by chance)
_SAVE_AT = 1 - 1 / SAVE_EVERY  # a draw at or above it is a save (0.995)

# Called with each generated event's partition, offset and stream entry values.
Sink = Callable[[int, int, list[bytes | str]], None]


class _Account:
    __slots__ = ("friends", "offers", "version")

    def __init__(self) -> None:
        self.version = 0
        self.offers: list[str] = []
        self.friends: list[str] = []


class _Stamps:
    """Event times one millisecond apart, formatted without strftime per event."""

    def __init__(self) -> None:
        self.base = datetime(2025, 9, 1, tzinfo=UTC)
        self.second = -1
        self.prefix = ""

    def at(self, ms: int) -> str:
        second, rest = divmod(ms, 1000)
        if second != self.second:
            moment = self.base + timedelta(seconds=second)
            self.second, self.prefix = second, moment.strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self.prefix}{rest:03d}Z"


class _Mix:
    """Seeded event payloads: (type, data) for an account, updating what it holds."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        friends = steam_ids(64, start=76561198123456789)
        self.friend_pool = friends
        self.templates = [make_offer(self.rng, 0, self.rng.choice(friends)) for _ in range(256)]
        self.next_offer = 20_000_000_000

    def _new_offer(self, acc: _Account) -> dict[str, Any]:
        oid = str(self.next_offer)
        self.next_offer += 1
        acc.offers.append(oid)
        template = self.templates[self.rng.randrange(len(self.templates))]
        return {**template, "trade_offer_id": oid}

    def _friend(self, acc: _Account, ts: str) -> dict[str, Any]:
        rng = self.rng
        fid = rng.choice(self.friend_pool)
        if fid not in acc.friends:
            acc.friends.append(fid)
        messages = [
            {"direction": "incoming", "message": "trade?", "timestamp": ts}
            for _ in range(rng.randint(0, 3))
        ]
        return {
            "friend_steam_id": fid,
            "negotiation": {
                "friend_steam_id": fid,
                "state": rng.choice(_FRIEND_STATES),
                "followUpCount": rng.randint(0, 3),
                "messages": messages,
                "language": rng.choice((None, "en", {"code": "en", "confidence": 0.9})),
                "updated_at": ts,
            },
        }

    def next(
        self, account: str, acc: _Account, ts: str, save: bool | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The account's next event; `save`: whether it is a whole-document save (None: by
        chance, 1 in SAVE_EVERY)."""
        if save is None:
            r = self.rng.random()
        elif save:
            r = 1.0
        else:
            r = self.rng.random() * _SAVE_AT
        if r < 0.88:
            if acc.offers and self.rng.random() < 0.5:
                oid = acc.offers[self.rng.randrange(len(acc.offers))]
                update = {"trade_offer_id": oid, "state": self.rng.choice(_STATES)}
                return "TradeOfferUpserted", {"offer": {**update, "updated_at": ts}}
            return "TradeOfferUpserted", {"offer": self._new_offer(acc)}
        if r < 0.98 or (r < _SAVE_AT and not acc.friends):
            return "FriendNegotiationUpserted", self._friend(acc, ts)
        if r < _SAVE_AT:
            gone = acc.friends[: self.rng.randint(1, 2)]
            del acc.friends[: len(gone)]
            return "FriendsRemoved", {"friend_steam_ids": gone}
        # A whole-document save: the bot's document with its friends and two new offers.
        acc.offers, acc.friends = [], []
        negotiations = {}
        for _ in range(2):
            friend = self._friend(acc, ts)
            negotiations[friend["friend_steam_id"]] = friend["negotiation"]
        doc = {
            "account_steam_id": account,
            "account_username": f"bot{int(account) % 1000}",
            "our_inventory": None,
            "trade_offers": [self._new_offer(acc), self._new_offer(acc)],
            "negotiations": negotiations,
        }
        return "NegotiationsSaved", doc


def generate_log(
    log_dir: Path,
    partitions: int,
    events: int,
    accounts: int,
    seed: int = 7,
    *,
    first_account: int | None = None,
    sink: Sink | None = None,
    steady: bool = False,
) -> int:
    """Write `events` valid log lines into empty partitions; return the bytes written.

    `first_account`: the SteamID64 the accounts start at (steam_ids' default if None);
    `sink` also gets every event's stream entry (to fill the partition streams);
    `steady`: accounts in turn, each saved every SAVE_EVERY of its events (see above).
    """
    check_partitions(log_dir, partitions)
    ids = steam_ids(accounts) if first_account is None else steam_ids(accounts, first_account)
    where = [partition_of(a, partitions) for a in ids]
    state = [_Account() for _ in ids]
    offsets = [0] * partitions
    buffers: list[list[bytes]] = [[] for _ in range(partitions)]
    sizes = [0] * partitions
    files = []
    for p in range(partitions):
        pdir = partition_dir(log_dir, p)
        pdir.mkdir(parents=True, exist_ok=True)
        files.append(open(segment_path(pdir, 0), "ab"))  # noqa: SIM115 (closed below)
    mix, stamps, pick = _Mix(seed), _Stamps(), random.Random(seed + 1)
    meta = {"source": "bench", "rules": RULES}
    total = 0
    try:
        for i in range(events):
            n = i % accounts if steady else pick.randrange(accounts)
            account, acc, p = ids[n], state[n], where[n]
            ts = stamps.at(i)
            save = None
            if steady:  # account n's saves fall n/accounts of the way into its period
                save = (acc.version + n * SAVE_EVERY // accounts) % SAVE_EVERY == SAVE_EVERY - 1
            kind, data = mix.next(account, acc, ts, save)
            acc.version += 1
            event = StoredEvent(
                str(uuid_utils.uuid7()), account, acc.version, p, offsets[p], kind, ts, data, meta
            )
            offsets[p] += 1
            line, values = event.encode()
            if sink is not None:
                sink(p, event.offset, values)
            buffers[p].append(line)
            sizes[p] += len(line)
            if sizes[p] >= _FLUSH_BYTES:
                files[p].write(b"".join(buffers[p]))
                total += sizes[p]
                buffers[p], sizes[p] = [], 0
        for p in range(partitions):
            files[p].write(b"".join(buffers[p]))
            total += sizes[p]
    finally:
        for f in files:
            f.close()
    return total
