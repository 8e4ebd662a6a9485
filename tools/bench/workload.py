"""What scenarios share: the write workload, load-generator processes, percentiles.

The workload is seeded and built ahead of the timed loop as far as possible
(payload templates, offer ids), so a figure measures the system under test and
not the load generator; on a 2-core machine every microsecond the generator
spends is taken from the writer it drives.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue
import random
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import uuid_utils

from eventlog.records import RULES, TRADE_OFFER_UPSERTED, StoredEvent, partition_of, utc_ts

from .legacy_docs import make_offer, steam_ids

__all__ = ["OfferStream", "percentile", "run_processes", "sample_events"]

_STATES = ("Accepted", "Declined", "Canceled", "Expired", "InEscrow", "Countered")
_READY_TIMEOUT_S = 60.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values` by nearest rank; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


_RECENT = 4096  # offers an update may pick from


class OfferStream:
    """An endless, seeded series of (account, TradeOfferUpserted data) over many accounts.

    Half of the upserts add a new offer with items (~0.7 KB of JSON), half move
    an offer added earlier to a new state (~0.1 KB), as a bot's trade-offer
    handler does; accounts are drawn from a large pool, so every partition
    gets traffic.
    """

    def __init__(
        self,
        seed: int,
        accounts: int = 4096,
        update_share: float = 0.5,
        first_account: int | None = None,
    ) -> None:
        """`first_account`: the SteamID64 the pool starts at (steam_ids' default if None)."""
        rng = random.Random(seed)
        self.rng = rng
        self.accounts = (
            steam_ids(accounts) if first_account is None else steam_ids(accounts, first_account)
        )
        friends = steam_ids(64, start=76561198123456789)
        self.templates = [make_offer(rng, 0, rng.choice(friends)) for _ in range(256)]
        self.update_share = update_share
        self.stamps = [utc_ts() for _ in range(16)]  # fixed strings: no clock in the loop
        # Offer ids unique per stream: a seed's own range of 20-digit-safe numbers.
        self.next_id = 10_000_000_000 + seed * 1_000_000_000
        # The last 4096 offers added, overwritten round-robin: a list, whose indexing is
        # O(1) (a deque's walks its blocks), for the random pick below.
        self.recent: list[tuple[str, str]] = []
        self._added = 0

    def next(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        if self.recent and rng.random() < self.update_share:
            account, oid = self.recent[rng.randrange(len(self.recent))]
            return account, {
                "offer": {
                    "trade_offer_id": oid,
                    "state": rng.choice(_STATES),
                    "updated_at": self.stamps[rng.randrange(16)],
                }
            }
        account = self.accounts[rng.randrange(len(self.accounts))]
        oid = str(self.next_id)
        self.next_id += 1
        if len(self.recent) < _RECENT:
            self.recent.append((account, oid))
        else:
            self.recent[self._added % _RECENT] = (account, oid)
        self._added += 1
        template = self.templates[rng.randrange(len(self.templates))]
        return account, {"offer": {**template, "trade_offer_id": oid}}

    def account_per_partition(self, partitions: int) -> list[str]:
        """One account of each partition (for warming every committer up)."""
        found: dict[int, str] = {}
        for account in self.accounts:
            found.setdefault(partition_of(account, partitions), account)
        return [found[p] for p in sorted(found)]


def sample_events(count: int, partitions: int, seed: int = 99) -> list[StoredEvent]:
    """Stored events shaped like the log's, for baselines that must match their size."""
    stream = OfferStream(seed)
    out = []
    for offset in range(count):
        account, data = stream.next()
        out.append(
            StoredEvent(
                id=str(uuid_utils.uuid7()),
                account=account,
                version=offset // 4 + 1,
                partition=partition_of(account, partitions),
                offset=offset,
                type=TRADE_OFFER_UPSERTED,
                ts=utc_ts(),
                data=data,
                meta={"source": "bench", "rules": RULES},
            )
        )
    return out


# A worker gets its index, its parameters, and a function that blocks until "go".
Worker = Callable[[int, dict[str, Any], Callable[[], None]], Any]


def _child(
    target: Worker, index: int, params: dict[str, Any], go: Any, results: Any
) -> None:  # runs in the child process
    try:

        def wait_for_go() -> None:
            results.put(("ready", index, None))
            go.wait()

        results.put(("done", index, target(index, params, wait_for_go)))
    except BaseException:
        results.put(("error", index, traceback.format_exc()))


def run_processes(target: Worker, params: Sequence[dict[str, Any]], timeout: float) -> list[Any]:
    """Run `target` in one process per params; start them together; return their results.

    Processes are spawned, not forked, so none inherits the parent's Redis
    connections or threads. Each sets itself up, calls `wait_for_go()`, and the
    timed part starts in all of them at once, when the last one is ready.
    """
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(target, i, p, go, results), daemon=True)
        for i, p in enumerate(params)
    ]
    for proc in procs:
        proc.start()
    out: list[Any] = [None] * len(procs)
    try:
        for phase, wait in (("ready", _READY_TIMEOUT_S), ("done", timeout)):
            pending = len(procs)
            while pending:
                try:
                    kind, index, value = results.get(timeout=wait)
                except queue.Empty:
                    raise RuntimeError(f"bench workers not {phase} within {wait:.0f}s") from None
                if kind == "error":
                    raise RuntimeError(f"bench worker {index} failed:\n{value}")
                if kind == phase:
                    pending -= 1
                    if kind == "done":
                        out[index] = value
            go.set()
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return out
