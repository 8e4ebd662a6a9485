"""The file projector's Folds in memory: a least-recently-used cache bounded in bytes.

A step folds each event into its account's Fold, so the busy accounts' Folds stay
loaded instead of being read back from their snapshots every batch. The bound is
the size of their snapshots, not a count of accounts: one account's document can
be megabytes while most are a few kilobytes, and the projector's memory must stay
bounded however long the log. An evicted account is read back from its snapshot
on its next event.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field

from .fold import Fold
from .snapshot_encode import Memo

__all__ = ["Cache", "Entry"]


@dataclass(slots=True)
class Entry:
    fold: Fold | None  # None: the account has no snapshot yet
    size: int  # bytes of its last snapshot (a guess until it is written)
    memo: Memo = field(default_factory=Memo)


class Cache:
    """Folds of recently touched accounts, bounded by their snapshots' total size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: OrderedDict[str, Entry] = OrderedDict()
        self.size = 0

    def get(self, account: str) -> Entry | None:
        entry = self.items.get(account)
        if entry is not None:
            self.items.move_to_end(account)
        return entry

    def add(self, account: str, fold: Fold | None, size: int) -> Entry:
        entry = self.items[account] = Entry(fold, size)
        self.size += size
        return entry

    def resize(self, account: str, size: int) -> None:
        entry = self.items.get(account)
        if entry is not None:
            self.size += size - entry.size
            entry.size = size

    def trim(self, keep: Container[str]) -> None:
        """Drop least recently used Folds (never those in `keep`) until under the limit."""
        if self.size <= self.limit:
            return
        for account in list(self.items):
            if self.size <= self.limit:
                break
            if account not in keep:
                self.size -= self.items.pop(account).size
