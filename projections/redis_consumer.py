"""One consumer of the Redis projector's group: leases, claims, reads and acks.

Each partition's stream is read through the group `keys.group()`. A consumer
first re-reads its own pending entries (delivered, not yet acknowledged: after
a crash, or while they wait behind a gap), then new ones; entries are
acknowledged only once applied, so a crash costs a redelivery, which the
version compare-and-set makes harmless. XAUTOCLAIM takes over what a dead
consumer left pending. A lease per partition (SET NX PX, renewed as it goes)
lets one consumer at a time read a partition, so with several consumers an
account's events still arrive in order. Entry ids and fields: redis_entries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis

from eventlog.keys import Keys
from eventlog.records import StoredEvent, as_text

from .redis_entries import Entries, entry_id, offset_of, read_entry
from .redis_scripts import LEASE, Call, Scripts

__all__ = ["Consumer"]

log = logging.getLogger("tradelog.projector.redis")


class Consumer:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        scripts: Scripts,
        name: str,
        partitions: Iterable[int],
        lease_ms: int,
        claim_idle_ms: int,
    ) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.group = keys.group()
        self.name = name
        self.partitions = sorted(partitions)
        self.streams = {p: keys.log(p) for p in self.partitions}
        self._by_stream = {s.encode(): p for p, s in self.streams.items()}
        self.lease_ms = lease_ms
        self.claim_idle_ms = claim_idle_ms
        self.held: set[int] = set() if lease_ms else set(self.partitions)
        self.dirty = set(self.partitions)  # our own pending entries may wait there
        self.drained = False  # the last read came back short in every partition
        self.foreign = set(self.partitions)  # other consumers may hold pending entries
        self.delivered: dict[int, int] = {}  # partition -> highest offset read
        self.regrouped = False  # the group was made again (Redis lost its data)
        self._claim_due: dict[int, float] = {}
        # Stream replies raw: decoding them from the flat field list is far cheaper than
        # redis-py's dict per entry, and this client shares the caller's connections.
        self._raw = redis.Redis(connection_pool=client.connection_pool)
        self._raw.set_response_callback("XREADGROUP", lambda reply, **options: reply)
        self.create_groups()

    def create_groups(self) -> None:
        """Make the group on every stream (and the stream) unless it is there."""
        for stream in self.streams.values():
            try:
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def lease(self, ttl_ms: int | None = None) -> None:
        """Take, renew (or with ttl 0, release) the partitions' leases."""
        ttl = self.lease_ms if ttl_ms is None else ttl_ms
        if not self.lease_ms:
            return
        wanted = self.partitions if ttl else sorted(self.held)
        calls = [Call(LEASE, [self.keys.lease(p)], [self.name, ttl]) for p in wanted]
        for p, reply in zip(wanted, self.scripts.run(calls), strict=True):
            code = int(reply)
            if code == 2:  # newly ours: whoever had it may have left entries pending
                log.info("%s took partition %d", self.name, p)
                self.dirty.add(p)
                self.foreign.add(p)
                self._claim_due[p] = 0.0
            if code in (1, 2):
                self.held.add(p)
            elif p in self.held:
                if code != 3:
                    log.warning("%s lost partition %d to another consumer", self.name, p)
                self.held.discard(p)

    def claim(self, now: float) -> None:
        """Take over entries pending longer than claim_idle_ms (a dead consumer's)."""
        for p in sorted(self.held):
            if now < self._claim_due.get(p, 0.0):
                continue
            self._claim_due[p] = now + self.claim_idle_ms / 2000
            cursor: Any = "0-0"
            for _ in range(100):
                try:
                    reply = self.client.xautoclaim(
                        self.streams[p],
                        self.group,
                        self.name,
                        self.claim_idle_ms,
                        cursor,
                        count=1000,
                    )
                except redis.ResponseError as e:
                    if "NOGROUP" not in str(e):
                        raise
                    self._lost_group(e)  # as `read` would have met it next
                    return
                cursor, claimed = reply[0], reply[1]
                if claimed:
                    log.info("%s claimed %d entries of partition %d", self.name, len(claimed), p)
                    self.dirty.add(p)
                if cursor in (b"0-0", "0-0"):
                    break

    def xread(
        self, ids: dict[int, str], count: int, block: int | None = None
    ) -> dict[int, Entries]:
        streams: dict[Any, Any] = {self.streams[p]: i for p, i in ids.items()}
        reply: Any = self._raw.xreadgroup(self.group, self.name, streams, count=count, block=block)
        # RESP3 answers a map, RESP2 a list of [stream, entries].
        pairs = reply.items() if isinstance(reply, dict) else (reply or ())
        return {self._by_stream[bytes(stream)]: list(entries) for stream, entries in pairs}

    def read(self, max_events: int) -> tuple[list[StoredEvent], dict[int, list[bytes]]]:
        """Our pending entries, then new ones, of the partitions held; and deleted ones."""
        try:
            return self._read(max_events)
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self._lost_group(e)
            return [], {}

    def _lost_group(self, e: redis.ResponseError) -> None:
        # Redis lost its data (a restart without persistence): start over; the relay
        # fills the streams in again and the version checks skip what is applied.
        log.warning("the consumer group is gone (%s): creating it again", e)
        self.create_groups()
        self._regroup()

    def _regroup(self) -> None:
        self.dirty.update(self.partitions)
        self.delivered.clear()
        self.regrouped = True  # for the projector: what it knew of Redis is void

    def _read(self, max_events: int) -> tuple[list[StoredEvent], dict[int, list[bytes]]]:
        held = sorted(self.held)
        count = max(1, max_events // max(1, len(held)))
        batches: dict[int, Entries] = {}
        full: set[int] = set()
        mine = [p for p in held if p in self.dirty]
        if mine:
            for p, entries in self.xread({p: "0" for p in mine}, count).items():
                batches[p] = entries
                if len(entries) >= count:
                    full.add(p)  # more of our own wait: new entries must come after them
            self.dirty -= set(mine) - full
        fresh = [p for p in held if p not in full]
        if fresh:
            for p, entries in self.xread({p: ">" for p in fresh}, count).items():
                if entries and offset_of(entries[0][0]) <= self.delivered.get(p, -1):
                    # New to the group yet not past what it gave us: the group was made
                    # again (Redis lost its data; another consumer met the NOGROUP). They
                    # are ours now, pending: read again once the projector has dropped
                    # what it knew.
                    self._regroup()
                    return [], {}
                batches.setdefault(p, []).extend(entries)
                if len(entries) >= count:
                    full.add(p)
        self.drained = not full
        events: list[StoredEvent] = []
        gone: dict[int, list[bytes]] = {}
        for p, entries in batches.items():
            for eid, fields in entries:
                if not fields:  # deleted from the stream: nothing to apply
                    gone.setdefault(p, []).append(eid)
                    continue
                events.append(read_entry(self.streams[p], p, eid, fields))
            if entries:
                top = offset_of(entries[-1][0])
                self.delivered[p] = max(top, self.delivered.get(p, -1))
        return events, gone

    def pending_elsewhere(self, event: StoredEvent) -> bool:
        """True if an entry before `event` is still pending with another consumer."""
        stream = self.streams[event.partition]
        summary = self.client.xpending(stream, self.group)
        below = f"({entry_id(event).decode()}"
        for consumer in summary.get("consumers") or ():
            other = consumer["name"]
            if as_text(other) == self.name:
                continue
            if self.client.xpending_range(stream, self.group, "-", below, 1, consumername=other):
                return True
        return False

    def ack(
        self, acks: dict[int, list[bytes]], waiting: dict[int, int], unapplied: dict[int, int]
    ) -> dict[int, int]:
        """Acknowledge entries; return the next offset still to apply of each partition touched.

        That is the lowest entry still pending in the group, if any (ours `waiting` to be
        read again, in flight (`unapplied`), or another consumer's), else one past the
        highest entry read.
        """
        touched = sorted(set(acks) | set(waiting))
        # Without leases other consumers read these partitions all along.
        check = [
            p
            for p in touched
            if not self.lease_ms or p in self.foreign or p in waiting or p in self.dirty
        ]
        pipe = self.client.pipeline(transaction=False)
        for p, ids in acks.items():
            pipe.xack(self.streams[p], self.group, *ids)
        for p in check:
            pipe.xpending(self.streams[p], self.group)
        summaries = dict(zip(check, pipe.execute()[len(acks) :], strict=True))
        positions: dict[int, int] = {}
        for p in touched:
            nxt = min(self.delivered.get(p, -1) + 1, unapplied.get(p, 1 << 62))
            summary = summaries.get(p)
            if summary is not None:
                if summary["pending"]:
                    nxt = min(nxt, offset_of(summary["min"]))
                names = {c["name"] for c in summary.get("consumers") or ()}
                if names <= {self.name.encode()}:
                    self.foreign.discard(p)
            positions[p] = nxt
        self.dirty.update(waiting)
        return positions
