"""Bringing a parked account of the file projection back once its fold is fixed.

The projector parks an account whose event does not apply and keeps its later
events waiting in the dead-letter record (see file_projector). Re-applying them is
an operator's step, run with the projector stopped (it takes the projection's lock):
it reads and writes the account's snapshot and record directly and needs none of a
FileProjector's state (cache, cursors, writers), so it lives apart from it.
"""

from __future__ import annotations

import os

from eventlog._exceptions import AccountParked, ProjectionGap
from eventlog.records import StoredEvent
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings

from .checkpoint import lock_projection, now_ms
from .file_parking import ParkRecord, read_park, remove_park, write_park
from .fold import apply
from .snapshot_writes import write_snapshots
from .snapshots import LEGACY_IN_PLACE, legacy_unimported, read_snapshot

__all__ = ["reapply_parked"]


def _from_log(settings: Settings, account: str, held: int, first: StoredEvent) -> list[StoredEvent]:
    """The account's events after `held` and before `first`, read from its partition."""
    p = first.partition
    cursor = Cursor(partition_dir(settings.log_dir, p), p)
    found: list[StoredEvent] = []
    try:
        while cursor.next_offset < first.offset:
            events, _ = cursor.read(limit=1)  # one chunk at a time: events may be large
            if not events:
                break
            found.extend(
                e
                for e in events
                if e.account == account
                and e.offset < first.offset
                and held < e.version < first.version
            )
    finally:
        cursor.close()
    return found


def reapply_parked(settings: Settings, account: str) -> int:
    """Re-apply a parked account's waiting events (once the fold is fixed); unpark it.

    Fills a version gap from the log first. Takes the projection's lock, so the file
    projector must be stopped (ProjectorBusy otherwise). Returns how many events were
    applied; raises AccountParked, leaving the account parked, if one still fails.
    """
    sync = settings.fsync != "off"
    fd = lock_projection(settings)
    try:
        record = read_park(settings, account)
        if record is None:
            return 0
        state = read_snapshot(settings, account)
        if state is None and legacy_unimported(settings, account):
            raise AccountParked(account, 0, LEGACY_IN_PLACE)
        held = 0 if state is None else int(state.doc["version"])
        events = record.events
        if events and events[0].version > held + 1:
            events = _from_log(settings, account, held, events[0]) + events
        applied = 0
        for i, event in enumerate(events):
            if event.version <= held:
                continue
            try:
                if event.version != held + 1:
                    raise ProjectionGap(account, held, event.version)
                state = apply(state, event)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                if applied and state is not None:
                    write_snapshots(settings, [(account, state)], sync=sync)
                again = ParkRecord(account, event.version, held, error, now_ms(), events[i:])
                write_park(settings, [again], sync=sync)
                raise AccountParked(account, event.version, error) from e
            held = event.version
            applied += 1
        if applied and state is not None:
            write_snapshots(settings, [(account, state)], sync=sync)
        remove_park(settings, account)
        return applied
    finally:
        os.close(fd)
