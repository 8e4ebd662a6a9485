"""Parked accounts of the file projection: their dead-letter records.

`checkpoints/parked/<account>.json` is a parked account's dead-letter record:
the event that failed, why, and every later event of that account, in order,
waiting for `tradelog replay file --account`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import orjson

from eventlog._exceptions import CorruptSnapshot, SnapshotUnavailable
from eventlog.records import LEGACY_IMPORTED, StoredEvent
from eventlog.settings import Settings

from .atomic import write_atomic
from .checkpoint import PARKED, load_json, parked_dir
from .durable import fsync_dir, make_dirs

__all__ = [
    "ParkRecord",
    "legacy_in_the_way",
    "read_park",
    "read_park_summary",
    "read_parks",
    "remove_park",
    "write_park",
]

_HEAD_BYTES = 16 * 1024  # enough for a record's summary: what comes before its events
_EVENTS_KEY = b',\n  "events": ['  # where ParkRecord.to_json puts them, after the summary


# The park of an account whose legacy file was in the way ends with what to do next.
_IMPORT_FIRST = (
    ": run `tradelog import-legacy` on its folder, then `tradelog replay file --account {}`"
)
_NOW_REPLAY = ", and is imported now: run `tradelog replay file --account {}`"


def legacy_in_the_way(path: str, account: str) -> str:
    """The park error of an account whose snapshot is a legacy file the log never had."""
    return f"{path} is a legacy file the log never imported" + _IMPORT_FIRST.format(account)


@dataclass(slots=True)
class ParkRecord:
    """A parked account: the first event that failed and every later one, in order."""

    account: str
    version: int  # the version of the event that failed
    held: int  # the version the account's snapshot holds
    error: str
    parked_at: int  # ms
    events: list[StoredEvent]

    @property
    def last_version(self) -> int:
        return self.events[-1].version if self.events else self.version

    def wait(self, event: StoredEvent) -> None:
        """Add a later event; the import a legacy file's park waits for makes its error
        say the next step."""
        self.events.append(event)
        first = _IMPORT_FIRST.format(self.account)
        if event.type == LEGACY_IMPORTED and self.error.endswith(first):
            self.error = self.error.removesuffix(first) + _NOW_REPLAY.format(self.account)

    def summary(self) -> dict[str, Any]:
        first = self.events[0] if self.events else None
        return {
            "account": self.account,
            "version": self.version,
            "held": self.held,
            "error": self.error,
            "parked_at": self.parked_at,
            "position": {"partition": first.partition, "offset": first.offset} if first else None,
            "waiting": len(self.events),
        }

    def to_json(self) -> bytes:
        body = {**self.summary(), "events": [e.to_dict() for e in self.events]}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ParkRecord:
        return cls(
            account=str(raw["account"]),
            version=int(raw["version"]),
            held=int(raw["held"]),
            error=str(raw["error"]),
            parked_at=int(raw["parked_at"]),
            events=[StoredEvent.from_dict(e) for e in raw["events"]],
        )


def read_park(settings: Settings, account: str) -> ParkRecord | None:
    path = parked_dir(settings) / f"{account}.json"
    raw = load_json(path)
    if raw is None:
        return None
    try:
        return ParkRecord.from_json(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptSnapshot(str(path), f"not a dead-letter record: {e!r}") from e


def read_park_summary(settings: Settings, account: str) -> dict[str, Any] | None:
    """A parked account's summary (ParkRecord.summary) from the head of its record, without
    its events: asked on every GET of it, and a record of whole-document saves grows to
    megabytes. The head is the summary as `to_json` writes it, before "events"."""
    # Asked on every write and GET, nearly always of an account with no record: plain
    # strings and a test that raises nothing (pathlib's joins and a failed open's
    # exception were ~10 µs of each, a record checked ~1).
    path = os.path.join(settings.data_dir, PARKED, account + ".json")
    if not os.access(path, os.F_OK):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotUnavailable(f"cannot read {path}: {e}") from e
    end = head.find(_EVENTS_KEY)
    if end < 0:  # (a summary longer than the head: a long error) read it whole
        record = read_park(settings, account)
        return None if record is None else record.summary()
    try:
        summary: dict[str, Any] = orjson.loads(head[:end] + b"}")
    except orjson.JSONDecodeError as e:
        raise CorruptSnapshot(str(path), f"not a dead-letter record: {e}") from e
    if not (
        isinstance(summary.get("error"), str)
        and type(summary.get("version")) is int
        and type(summary.get("waiting")) is int
    ):
        raise CorruptSnapshot(str(path), "not a dead-letter record: no error, version, waiting")
    return summary


def read_parks(settings: Settings) -> dict[str, ParkRecord]:
    """Every parked account's record."""
    try:
        names = sorted(os.listdir(parked_dir(settings)))
    except FileNotFoundError:
        return {}
    out: dict[str, ParkRecord] = {}
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            record = read_park(settings, name[: -len(".json")])
            if record is not None:
                out[record.account] = record
    return out


def write_park(settings: Settings, records: list[ParkRecord], *, sync: bool = True) -> None:
    """Write dead-letter records atomically, then sync their directory once."""
    if not records:
        return
    directory = parked_dir(settings)
    make_dirs(directory, sync=sync)
    for record in records:
        write_atomic(directory / f"{record.account}.json", record.to_json(), sync=sync)
    if sync:
        fsync_dir(directory)


def remove_park(settings: Settings, account: str) -> None:
    directory = parked_dir(settings)
    try:
        os.unlink(directory / f"{account}.json")
    except FileNotFoundError:
        return
    except OSError as e:
        raise SnapshotUnavailable(f"cannot remove {directory}/{account}.json: {e}") from e
    fsync_dir(directory)
