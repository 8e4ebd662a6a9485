"""Reading one account's events back from the file log (oldest first).

The log keeps no per-account index, so a history read scans the account's
partition. It parses only the lines that name the account: a byte search (at C
speed) for its id finds them, so a long partition costs a read of its segments,
not a JSON parse of every other account's events (a 1M-event log has ~125k per
partition). A line the search finds is parsed and checked, since the id may also
appear in another account's event (a friend's id, say).
"""

from __future__ import annotations

import orjson

from ._exceptions import CorruptLog, LogUnavailable
from .records import StoredEvent, partition_of
from .segments import partition_dir, segment_bases, segment_path
from .settings import Settings

__all__ = ["account_events"]

_CHUNK = 4 << 20


def account_events(
    settings: Settings, account: str, from_version: int = 1, limit: int = 100
) -> list[StoredEvent]:
    """Up to `limit` events of `account` with version >= `from_version`, in order.

    A partial last line (a write in progress, or a crash's) is not an event yet and
    is left out. CorruptLog if a line naming the account is not an event.
    """
    pdir = partition_dir(settings.log_dir, partition_of(account, settings.partitions))
    found = _Found(account, from_version, limit)
    for base in segment_bases(pdir):
        path = segment_path(pdir, base)
        try:
            with open(path, "rb") as f:
                rest, lines = b"", 0  # a line cut by the chunk's end; lines before `rest`
                while not found.full:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    block = rest + chunk
                    end = block.rfind(b"\n") + 1
                    block, rest = block[:end], block[end:]
                    found.scan(block, str(path), lines)
                    lines += block.count(b"\n")
        except OSError as e:
            raise LogUnavailable(f"cannot read {path}: {e}") from e
        if found.full:
            break
    return found.events[:limit]


class _Found:
    """The account's events found so far, and the search for more in a block of lines."""

    def __init__(self, account: str, from_version: int, limit: int) -> None:
        self.account = account
        self.needle = account.encode()
        self.from_version = from_version
        self.limit = limit
        self.events: list[StoredEvent] = []

    @property
    def full(self) -> bool:
        return len(self.events) >= self.limit

    def scan(self, block: bytes, path: str, lines_before: int) -> None:
        """Parse the complete lines of `block` that hold the account's id."""
        at = block.find(self.needle)
        while at >= 0 and not self.full:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.index(b"\n", at)
            try:
                event = StoredEvent.from_line(block[start:end])
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
                line = lines_before + block.count(b"\n", 0, start) + 1
                raise CorruptLog(path, line, f"not an event: {e}") from e
            if event.account == self.account and event.version >= self.from_version:
                self.events.append(event)
            at = block.find(self.needle, end)
