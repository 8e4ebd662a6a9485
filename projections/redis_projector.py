"""The Redis projector daemon: the partition streams, through a consumer group, applied.

A step renews the consumer's partition leases, takes over entries a dead
consumer left pending (redis_consumer), reads a batch (own pending entries
first, then new ones) and sends its scripts in one write (redis_applier).
While Redis runs them, the next batch is read and folded; then the first
batch's replies are read, what it applied or parked is acknowledged
(redis_inflight), and the positions reached are published:
`keys.progress("redis")` (partition -> next offset to apply, `heartbeat` -> ms,
`stopped:<consumer>` -> ms of its clean stop) and a ring of the progress bell, so API
workers answering read-your-writes wake at once. Any number of projectors may
run, on any host; each partition is read by one at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis

from eventlog._exceptions import RedisUnavailable
from eventlog.keys import Keys
from eventlog.notify import PROGRESS, Ringer
from eventlog.records import StoredEvent
from eventlog.settings import Settings

from . import redis_progress as progress
from .gcpause import Freezer, paused
from .redis_applier import Outcome, RedisApplier
from .redis_consumer import Consumer
from .redis_inflight import InFlight

__all__ = ["RedisProjector"]

log = logging.getLogger("tradelog.projector.redis")

T = TypeVar("T")


class RedisProjector:
    """One consumer of the Redis projector's group, driven by projections.daemon.run."""

    name = "redis"

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        consumer: str | None = None,
        *,
        partitions: Iterable[int] | None = None,
        lease_ms: int = 10_000,
        claim_idle_ms: int = 30_000,
        cache_size: int = 20_000,
        freeze_gc: bool = True,
    ) -> None:
        """`consumer` names this reader in the group: a restart under the same name takes
        its pending entries and leases back at once; under another name, after the old
        leases expire (`lease_ms`) and its entries have idled `claim_idle_ms`.
        `partitions` limits which partitions it may read (default: all), so several
        processes can share the work; `lease_ms=0` reads them without leases.
        `freeze_gc` keeps the cycle collector off the cached states (gcpause.Freezer)."""
        self.settings = settings
        self.client = client
        self.keys = Keys(settings.key_prefix)
        self.applier = RedisApplier(client, self.keys, cache_size)
        chosen = range(settings.partitions) if partitions is None else partitions
        self.consumer = self._guard(
            Consumer,
            client,
            self.keys,
            self.applier.scripts,
            consumer or f"{socket.gethostname()}-{os.getpid()}",
            chosen,
            lease_ms,
            claim_idle_ms,
        )
        self.positions: dict[int, int] = {}  # partition -> next offset to apply
        self.waiting = 0  # entries read but not applied: behind a gap that may still close
        self._lease_due = 0.0
        self._parked_due = 0.0
        self._freezer = Freezer() if freeze_gc else None
        self._inflight = InFlight()
        self._ringer = Ringer(settings.run_dir, PROGRESS)
        self.elsewhere: list[int] = []  # at close: the partitions another consumer held

    def _guard(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except redis.RedisError as e:
            raise RedisUnavailable(f"redis projector: {e}") from e

    def _maintain(self, now: float) -> None:
        if now >= self._lease_due:
            self.consumer.lease()
            self._lease_due = now + self.consumer.lease_ms / 4000
        if self.consumer.held:
            self.consumer.claim(now)
        if now >= self._parked_due:  # another consumer may have parked accounts
            self.applier.parking.refresh()
            self._parked_due = now + 1.0

    def step(self, max_events: int) -> int:
        """Apply a batch of up to `max_events` entries; return how many were handled.

        Handled means applied, found already applied (a redelivery) or parked; 0 means
        caught up, with nothing in flight. Entries left waiting behind a gap that may
        still close are counted in `waiting`.
        """
        try:
            with paused():
                return self._guard(self._step, max_events)
        except RedisUnavailable:
            self.consumer.dirty.update(self.consumer.partitions)  # read again what was read
            self._inflight.batches.clear()
            self.applier.forget()
            raise

    def _step(self, max_events: int) -> int:
        self._maintain(time.monotonic())
        consumer = self.consumer
        if consumer.regrouped:  # its claim met the group gone: nothing in flight stands
            self._lost()
        handled = 0
        worked = bool(self._inflight.batches)
        if consumer.dirty & consumer.held:
            # Our pending entries are read again next, and those in flight are among them;
            # so are the waiting ones, in order before any later event of their accounts.
            handled += self._finish(len(self._inflight.batches))
            self._inflight.waits.clear()
        # Two batches in flight at most: Redis runs one while the next one is folded.
        while consumer.held and len(self._inflight.batches) < 2:
            if self._inflight.batches and consumer.dirty & consumer.held:
                break
            events, gone = consumer.read(max_events)
            if consumer.regrouped:
                self._lost()
                continue  # (read again, from the streams' start: not caught up)
            if gone:
                handled += sum(len(ids) for ids in gone.values())
                self._complete(Outcome(), gone)
            if not events:
                break
            worked = True
            batch = self.applier.submit(events, self._transient)
            if batch is not None:
                self._inflight.add(batch, events)
            if consumer.drained:
                # Read to the streams' ends just now: a second read would find nothing
                # (under a trickle of writes, one round trip saved every step).
                break
        if self._inflight.batches:
            handled += self._finish(1)
        if not handled:  # nothing came back handled: never report "caught up" with work in flight
            handled += self._finish(len(self._inflight.batches))
        if not worked:
            self.waiting = 0
        return handled

    def _lost(self) -> None:
        """Redis lost its data under us (a FLUSHALL, a restart without persistence that
        the client reconnected through): the states cached and the batches in flight
        were read from what is gone. Folded on, the events the relay copies again would
        pass for redeliveries up to the cached versions, and the next park every account
        for a gap against the empty projection."""
        log.warning("Redis lost its data: applying the streams again from their start")
        self.consumer.regrouped = False
        self._inflight.batches.clear()
        self._inflight.waits.clear()
        self.applier.forget()
        self.applier.parking.refresh()
        self.positions.clear()  # (a heartbeat would publish them into the new progress hash)

    def _transient(self, event: StoredEvent) -> bool:
        """True if the event before `event` may still come: it waits in an earlier batch
        of ours, or is pending with another consumer."""
        if self._inflight.behind(event):
            return True
        return self.consumer.pending_elsewhere(event)

    def _finish(self, count: int) -> int:
        """Finish the oldest `count` batches in flight; return how many entries they handled."""
        handled = 0
        for _ in range(min(count, len(self._inflight.batches))):
            batch, _ = self._inflight.batches.popleft()
            outcome = self.applier.finish(batch)
            handled += len(outcome.handled)
            self._complete(outcome, {})
        return handled

    def _complete(self, outcome: Outcome, gone: dict[int, list[bytes]]) -> None:
        """Acknowledge what a batch handled and publish the positions reached."""
        if outcome.parked:
            log.error("parked accounts: %s", ", ".join(outcome.parked))
        acks, waiting, unapplied = self._inflight.settle(outcome, gone)
        self.waiting = len(outcome.waiting)
        self.positions.update(self.consumer.ack(acks, waiting, unapplied))
        self._publish()
        if self._freezer is not None:
            self._freezer.freeze()

    def _publish(self) -> None:
        progress.publish(self.client, self.keys, self.positions, self.consumer.name, self._ringer)

    def idle(self, timeout: float) -> None:
        """Block until new entries come (the next step reads them) or `timeout` passes."""
        now = time.monotonic()
        self._guard(self._maintain, now)
        held = self.consumer.held
        if not held:  # a standby: look for a free lease again soon
            time.sleep(min(timeout, max(0.01, self._lease_due - now)))
            return
        limit = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        if limit:  # the blocking read must answer before the socket gives up
            timeout = min(timeout, float(limit) * 0.8)
        ids = {p: ">" for p in held}
        got = self._guard(self.consumer.xread, ids, 1, max(1, int(timeout * 1000)))
        self.consumer.dirty.update(got)  # delivered to us now: pending, read as our own

    def heartbeat(self) -> None:
        """Publish liveness (and the positions) even when there is nothing to apply."""
        self._guard(self._publish)

    def reapply_parked(self, account: str) -> int:
        """Re-apply a parked account's waiting events and unpark it (the replay tool's call)."""
        return self.applier.reapply_parked(account)

    def parked(self) -> dict[str, dict[str, Any]]:
        """Every parked account's dead-letter record (account, version, error, position)."""
        return self.applier.parking.records()

    def summary(self) -> str:
        """For the command's exit line: the partitions another consumer held at the end
        (a burst run is caught up on the others only)."""
        if not self.elsewhere:
            return "every partition applied here"
        listed = ", ".join(map(str, self.elsewhere))
        return f"partitions {listed} held by another consumer: not applied here"

    def close(self) -> None:
        """Finish the batches in flight, then give the leases back so another consumer
        takes over at once."""
        self.elsewhere = sorted(set(self.consumer.partitions) - self.consumer.held)
        try:
            self._guard(self._finish, len(self._inflight.batches))
            self._guard(self.consumer.lease, 0)
            self._guard(progress.say_stopped, self.client, self.keys, self.consumer.name)
        except RedisUnavailable as e:
            log.warning("could not release the leases: %s", e)
        finally:
            self._ringer.close()
