"""The Redis projector's batches in flight and what finishing one settles.

Two batches may be in flight at once: Redis runs one while the next is folded.
An event whose predecessor waits in an earlier batch of ours waits too; once a
batch is finished, what it handled is acknowledged, and each partition's next
offset to apply is held below what still waits or is in flight.
"""

from __future__ import annotations

from collections import deque

from eventlog.records import StoredEvent

from .redis_applier import Batch, Outcome
from .redis_entries import entry_id

__all__ = ["InFlight"]


class InFlight:
    """Batches sent to Redis and not finished, and the accounts with events of ours waiting."""

    def __init__(self) -> None:
        # Each batch with the lowest offset it holds of each partition.
        self.batches: deque[tuple[Batch, dict[int, int]]] = deque()
        self.waits: dict[str, int] = {}  # account -> lowest offset of ours waiting

    def add(self, batch: Batch, events: list[StoredEvent]) -> None:
        lowest: dict[int, int] = {}
        for event in events:
            lowest.setdefault(event.partition, event.offset)
        self.batches.append((batch, lowest))

    def behind(self, event: StoredEvent) -> bool:
        """True if an earlier event of `event`'s account waits in a batch of ours."""
        lowest = self.waits.get(event.account)
        return lowest is not None and lowest < event.offset

    def settle(
        self, outcome: Outcome, gone: dict[int, list[bytes]]
    ) -> tuple[dict[int, list[bytes]], dict[int, int], dict[int, int]]:
        """For a finished batch (and entries deleted from the stream): the entries to
        acknowledge, each partition's lowest waiting offset, and its lowest unapplied one."""
        acks = {p: list(ids) for p, ids in gone.items()}
        for event in outcome.handled:
            acks.setdefault(event.partition, []).append(entry_id(event))
        waiting: dict[int, int] = {}
        for event in outcome.handled:
            self.waits.pop(event.account, None)
        for event in outcome.waiting:
            waiting[event.partition] = min(event.offset, waiting.get(event.partition, event.offset))
            self.waits[event.account] = min(
                event.offset, self.waits.get(event.account, event.offset)
            )
        unapplied = dict(waiting)
        for _, lowest in self.batches:
            for p, offset in lowest.items():
                unapplied[p] = min(offset, unapplied.get(p, offset))
        return acks, waiting, unapplied
