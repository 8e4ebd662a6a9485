"""Folding the file log in memory: the engine every rebuild and every check runs on.

The log is read partition by partition up to ends measured beforehand, and each
account is folded with `projections.fold.apply` from empty (nothing skipped). An
account whose events stop folding (a poison event, a gap in the log) is set aside
with its last good version and every later event, as the daemons park it, so the
rest of the pass goes on. Replay writes the folds; verify compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from eventlog._exceptions import LogUnavailable
from eventlog.records import StoredEvent, partition_of
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings

from .fold import Fold, apply
from .gcpause import paused

__all__ = ["Folded", "Poisoned", "Tick", "fold_log", "read_log"]

_READ = 20_000  # events per cursor read: one read chunk, a few MiB

Tick = Callable[[int], None]  # called with how many more events were folded


@dataclass(slots=True)
class Poisoned:
    """An account whose events stopped folding: why, its last good version, what waits."""

    error: str
    held: int
    events: list[StoredEvent]


@dataclass(slots=True)
class Folded:
    """Accounts folded from the log: their states, last positions, poisoned accounts."""

    folds: dict[str, Fold] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)  # account -> its last event's offset
    poisoned: dict[str, Poisoned] = field(default_factory=dict)
    events: int = 0
    wanted: frozenset[str] | None = None  # fold only these accounts (None: all)

    def add(self, event: StoredEvent) -> None:
        account = event.account
        if self.wanted is not None and account not in self.wanted:
            return
        bad = self.poisoned.get(account)
        if bad is not None:
            bad.events.append(event)  # order within the account is never broken
            return
        state = self.folds.get(account)
        try:
            self.folds[account] = apply(state, event)
        except Exception as e:  # a poison event (a bug) or a gap in the log: park it
            held = 0 if state is None else int(state.doc["version"])
            self.poisoned[account] = Poisoned(f"{type(e).__name__}: {e}", held, [event])
            return
        self.last[account] = event.offset

    def add_all(self, events: list[StoredEvent]) -> None:
        """`add` for each event; the common case (every account folds) inlined for speed."""
        if self.wanted is not None or self.poisoned:
            for event in events:
                self.add(event)
            return
        folds, last = self.folds, self.last
        for i, event in enumerate(events):
            account = event.account
            try:
                folds[account] = apply(folds.get(account), event)
            except Exception:
                for rest in events[i:]:
                    self.add(rest)  # the slow path from the first poison event on
                return
            last[account] = event.offset

    def position(self, account: str, partitions: int) -> str:
        return f"{partition_of(account, partitions)}:{self.last[account]}"


def read_log(
    settings: Settings, ends: dict[int, int], start: dict[int, int] | None = None
) -> Iterator[tuple[int, list[StoredEvent]]]:
    """(partition, events) in log order, partition by partition, for offsets [start, end)."""
    for p in sorted(ends):
        end, first = ends[p], (start or {}).get(p, 0)
        if first >= end:
            continue
        cursor = Cursor(partition_dir(settings.log_dir, p), p, first)
        try:
            while cursor.next_offset < end:
                events, _ = cursor.read(limit=_READ)
                if not events:
                    break
                if cursor.next_offset > end:  # appended after the end was measured
                    del events[len(events) - (cursor.next_offset - end) :]
                yield p, events
            if cursor.next_offset < end:
                raise LogUnavailable(
                    f"partition {p} of {settings.log_dir} ends at offset "
                    f"{cursor.next_offset}, before {end}: was the log cut?"
                )
        finally:
            cursor.close()


def fold_log(
    settings: Settings,
    ends: dict[int, int],
    into: Folded,
    *,
    tick: Tick | None = None,
    observe: Callable[[int, list[StoredEvent]], None] | None = None,
    start: dict[int, int] | None = None,
) -> Folded:
    """Fold partitions' events [start, end) into `into`, partition by partition."""
    with paused():  # the fold keeps millions of acyclic objects alive to the end
        for p, events in read_log(settings, ends, start):
            if observe is not None:
                observe(p, events)
            into.add_all(events)
            into.events += len(events)
            if tick is not None:
                tick(len(events))
    return into
