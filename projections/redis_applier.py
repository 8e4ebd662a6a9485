"""Applying events to the Redis projection: the fold in Python, the writes in Lua.

`submit` folds a batch of events per account from a cache of Fold states
(loaded from Redis once, then kept), plans each account's calls (redis_plan)
and sends them all in one write without waiting; `finish` reads the replies.
Between the two the caller can fold the next batch while Redis runs this one;
the cache already holds the states the batch will reach, and if a call is
refused that is harmless: every call compares-and-sets the account's version,
so a redelivered event changes nothing and a change computed from a stale
state is refused. Such an account is reloaded from Redis and computed again.
An event the fold cannot apply, a real version gap, or a projection that
cannot be read back (a value stored by hand) parks its account (redis_parking)
while every other account goes on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from eventlog._exceptions import AccountParked, ProjectionGap
from eventlog.keys import Keys
from eventlog.records import StoredEvent

from .fold import Fold
from .redis_parking import Parking
from .redis_plan import Plan, plan, version_of
from .redis_reader import read_folds_apart
from .redis_scripts import Call, Scripts, Status, status_of

__all__ = ["Batch", "Outcome", "RedisApplier", "Transient"]

log = logging.getLogger("tradelog.projector.redis")

_ROUNDS = 4  # reload-and-retry rounds for accounts another consumer moved meanwhile

# Called with the first event after a gap: True if the gap may still close (the
# missing event is in flight elsewhere), so the account's events wait instead of parking.
Transient = Callable[[StoredEvent], bool]


@dataclass(slots=True)
class Outcome:
    handled: list[StoredEvent] = field(default_factory=list)  # applied, redelivered or parked
    waiting: list[StoredEvent] = field(default_factory=list)  # behind a gap that may close
    applied: int = 0
    parked: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Batch:
    """A batch whose calls are sent and whose replies are not read yet."""

    todo: dict[str, list[StoredEvent]]
    plans: dict[str, Plan]
    transient: Transient | None


class RedisApplier:
    """The write side of the Redis projection; one per projector (not thread-safe)."""

    def __init__(self, client: redis.Redis, keys: Keys, cache_size: int = 20_000) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self.parking = Parking(client, keys, self.scripts)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Fold | None] = OrderedDict()
        # Accounts whose projection could not be read back (a value stored by hand):
        # parked like a poison event, so every other account goes on.
        self._damaged: dict[str, str] = {}

    def forget(self, accounts: Sequence[str] | None = None) -> None:
        """Drop cached states (all, and whatever is in flight, when None)."""
        if accounts is None:
            self._cache.clear()
            self.scripts.drop()
        for account in accounts or ():
            self._cache.pop(account, None)

    def _load(self, accounts: Sequence[str]) -> None:
        if accounts:
            folds, damaged = read_folds_apart(self.client, self.keys, accounts)
            self._cache.update(folds)
            for account in folds:
                self._damaged.pop(account, None)
            self._damaged.update(damaged)

    def _remember(self, account: str, state: Fold | None) -> None:
        if account in self._damaged:
            return  # nothing known of it: read again next time
        self._cache[account] = state
        self._cache.move_to_end(account)

    def apply(self, events: Sequence[StoredEvent], transient: Transient | None = None) -> Outcome:
        """Apply events (in log order) and wait: what became of each is returned."""
        batch = self.submit(events, transient)
        return Outcome() if batch is None else self.finish(batch)

    def submit(
        self, events: Sequence[StoredEvent], transient: Transient | None = None
    ) -> Batch | None:
        """Plan events (in log order) and send their calls; `finish` collects the outcome.

        Batches are finished in the order submitted. Raises RedisUnavailable when Redis
        fails; the cache is then dropped and the same events may simply come again.
        """
        if not events:
            return None
        todo: dict[str, list[StoredEvent]] = {}
        for event in events:
            todo.setdefault(event.account, []).append(event)
        try:
            parked = self.parking.accounts  # (their events only join the waiting list)
            self._load([a for a in todo if a not in self._cache and a not in parked])
            plans = {account: self._plan(account, evs) for account, evs in todo.items()}
            for account, p in plans.items():
                if not p.follow:
                    self._remember(account, p.state)  # what Redis will hold once applied
            # The accounts set lives outside the accounts' slots: not in their scripts.
            calls = [Call("", [], ["SADD", self.keys.accounts(), *todo])]
            calls += [call for p in plans.values() for call in p.calls]
            self.scripts.send(calls)
        except Exception:
            self.forget()
            raise
        return Batch(todo, plans, transient)

    def finish(self, batch: Batch) -> Outcome:
        """Read a submitted batch's replies and settle it (retries, waits, parking)."""
        out = Outcome()
        try:
            replies = self.scripts.receive()[1:]
            self._settle(batch, replies, out)
        except Exception:
            self.forget()
            raise
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _settle(self, batch: Batch, replies: list[object], out: Outcome) -> None:
        todo, plans, transient = batch.todo, batch.plans, batch.transient
        # Accounts behind a gap found real: no earlier entry is pending anywhere, so each
        # was applied or parked before it was acknowledged, and a reload from now on
        # shows whatever the other consumers applied.
        checked: set[str] = set()
        for round_no in range(_ROUNDS):
            retry: dict[str, list[StoredEvent]] = {}
            at = 0
            for account, p in plans.items():
                mine = replies[at : at + len(p.calls)]
                at += len(p.calls)
                if not self._settled(account, p, mine):
                    retry[account] = todo[account]
                    continue
                out.handled += p.done
                out.applied += p.applied
                if p.follow:
                    continue
                if round_no:
                    self._remember(account, p.state)
                if p.poison is not None and account in self.parking.accounts:
                    retry[account] = p.rest  # parked by an earlier batch meanwhile: follow
                elif p.poison is not None:
                    self._park(account, p.rest, p.poison, out)
                elif p.rest and account in checked:  # a reload did not close the gap
                    error = ProjectionGap(account, version_of(p.state), p.rest[0].version)
                    log.error("parking %s: %s", account, error)
                    self._park(account, p.rest, str(error), out)
                elif p.rest and transient is not None and transient(p.rest[0]):
                    out.waiting += p.rest  # the missing event is in flight elsewhere
                elif p.rest:
                    checked.add(account)
                    retry[account] = p.rest
            if not retry or round_no == _ROUNDS - 1:
                break
            todo = retry
            self.forget(list(retry))
            self._load(list(retry))
            plans = {account: self._plan(account, evs) for account, evs in todo.items()}
            replies = self.scripts.run([call for p in plans.values() for call in p.calls])
        for account, events in retry.items():  # still contended: they come again later
            self._cache.pop(account, None)
            out.waiting += events

    def _plan(self, account: str, events: list[StoredEvent]) -> Plan:
        if account in self.parking.accounts:
            return Plan(self.parking.follow(account, events), None, list(events), follow=True)
        if account in self._damaged:
            return Plan([], None, [], list(events), poison=self._damaged[account])
        return plan(self.keys, account, self._cache.get(account), events)

    def _settled(self, account: str, p: Plan, replies: list[object]) -> bool:
        if p.follow:
            return self.parking.followed(account, replies)
        return all(status_of(reply)[0] is not Status.STALE for reply in replies)

    def _park(self, account: str, events: list[StoredEvent], error: str, out: Outcome) -> None:
        self.scripts.run(self.parking.park(account, events, error))
        self._cache.pop(account, None)
        self._damaged.pop(account, None)  # the replay that unparks it mends it
        out.handled += events
        out.parked.append(account)

    def reapply_parked(self, account: str) -> int:
        """Apply a parked account's waiting events (once the fold is fixed) and unpark it.

        Returns how many events were applied. Raises AccountParked, with the account
        still parked, if an event still fails; events that arrive meanwhile are taken too.
        """
        applied = 0
        for _ in range(100):
            events = self.parking.waiting(account)
            self.forget([account])
            self._load([account])
            if account in self._damaged:  # still: the replay did not rewrite it
                error = self._damaged.pop(account)
                version = events[0].version if events else 0
                if events:
                    self.parking.note(account, version, error)
                raise AccountParked(account, version, error)
            if events:
                p = plan(self.keys, account, self._cache.get(account), events)
                replies = self.scripts.run(p.calls)
                if not self._settled(account, p, replies):
                    continue
                if p.rest:
                    held = version_of(p.state)
                    error = p.poison or str(ProjectionGap(account, held, p.rest[0].version))
                    self.parking.note(account, p.rest[0].version, error)
                    self.forget([account])
                    raise AccountParked(account, p.rest[0].version, error)
                applied += p.applied
            if self.parking.unpark(account, len(events)):
                self.forget([account])
                return applied
        raise AccountParked(account, 0, "its waiting events kept changing while re-applied")
