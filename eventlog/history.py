"""Reading one account's events back from the file log (oldest first)."""

from __future__ import annotations

from .records import StoredEvent, partition_of
from .segments import Cursor, partition_dir
from .settings import Settings

__all__ = ["account_events"]


def account_events(
    settings: Settings, account: str, from_version: int = 1, limit: int = 100
) -> list[StoredEvent]:
    """Up to `limit` events of `account` with version >= `from_version`, in order.

    Scans the account's partition: history reads are rare next to appends, and
    the log keeps no per-account index.
    """
    p = partition_of(account, settings.partitions)
    cursor = Cursor(partition_dir(settings.log_dir, p), p)
    out: list[StoredEvent] = []
    try:
        while len(out) < limit:
            batch, _ = cursor.read(limit=10_000)
            if not batch:
                break
            out.extend(e for e in batch if e.account == account and e.version >= from_version)
    finally:
        cursor.close()
    return out[:limit]
