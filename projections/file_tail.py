"""The file projector's reading side: every partition's file log, taken in turn.

Each partition is read by its own Cursor from the checkpoint's offset (an
offset beyond the end of its log is refused). A step takes the available
events round-robin over partitions, each in its own order, bounded in count and
in log bytes: whole-document events can be megabytes each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from eventlog._exceptions import CheckpointAhead
from eventlog.records import StoredEvent
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings

__all__ = ["STEP_BYTES", "Tail"]

STEP_BYTES = 64 << 20  # log bytes one step reads at most, whatever its event limit


class Tail:
    """The partitions' file logs, read from the given offsets."""

    def __init__(self, settings: Settings, positions: dict[int, int]) -> None:
        self.settings = settings
        self.cursors = [self._cursor(p, positions[p]) for p in range(settings.partitions)]
        self._turn = 0

    def _cursor(self, p: int, offset: int) -> Cursor:
        cursor = Cursor(partition_dir(self.settings.log_dir, p), p, offset)
        if cursor.next_offset < offset:
            cursor.close()
            raise CheckpointAhead(
                f"the checkpoint says partition {p} is applied up to offset "
                f"{offset} but its log ends at {cursor.next_offset}"
            )
        return cursor

    def take(self, limit: int, only: Iterable[int] | None = None) -> Iterator[list[StoredEvent]]:
        """Up to `limit` available events, partitions in turn (each in its own order; `only`
        these, the ones a ring named), in chunks of one read each: a step folds a chunk
        before the next is parsed, so it holds a few megabytes of events, not its whole step.

        Bounded in bytes too: whole-document events can be megabytes each. Nothing is
        held between steps: a chunk is parsed only as far as the step takes it (the
        cursor reads the rest again next time), else each partition kept its last
        chunk's remainder, and the projector's peak grew with the partitions it had
        read a step's end in, that is with the log's length (bench memory).
        """
        taken = 0
        budget = STEP_BYTES
        n = self.settings.partitions
        if only is None:
            start, self._turn = self._turn, (self._turn + 1) % n
            order: Iterable[int] = ((start + i) % n for i in range(n))
        else:
            order = sorted(p for p in only if 0 <= p < n)
        for p in order:
            cursor = self.cursors[p]
            while (want := limit - taken) > 0 and budget > 0:
                base, pos = cursor.base, cursor.pos
                # limit=1: one read chunk (or one long line) per call, so the budget is
                # checked at least every few megabytes.
                chunk, _ = cursor.read(limit=1, most=want)
                if not chunk:
                    break
                budget -= cursor.pos - (pos if cursor.base == base else 0)
                taken += len(chunk)
                yield chunk
                del chunk  # the consumer's is then the only reference

    def sync(self, partitions: Iterable[int]) -> None:
        """Make what was read of `partitions` durable: writers ring before they sync, and
        no snapshot may show an event a crash could still take from the log."""
        for p in partitions:
            self.cursors[p].sync()

    def close(self) -> None:
        for cursor in self.cursors:
            cursor.close()
