"""The file projector's bookkeeping: its lock, checkpoint, parked accounts, progress.

`checkpoints/file.lock` is held (flock) by the one process that may write the
file projection: the projector, or a replay of parked accounts.

`checkpoints/file.json` holds, per partition, the next offset to apply, the
heartbeat (ms) and the projector's pid. It is written after the batch's
snapshots are durable, so it never claims an event whose snapshot could still
be lost; an older checkpoint only means redelivery, which versions make
harmless. `checkpoints/parked/<account>.json` is a parked account's
dead-letter record: the event that failed, why, and every later event of that
account, in order, waiting for `tradelog replay file --account`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eventlog._exceptions import (
    CorruptSnapshot,
    PartitionMismatch,
    ProjectorBusy,
    SnapshotUnavailable,
)
from eventlog.records import StoredEvent
from eventlog.segments import log_end, log_ends
from eventlog.settings import Settings

from .atomic import fsync_dir, make_dirs, read_file, write_atomic

__all__ = [
    "Checkpoint",
    "ParkRecord",
    "check_partitions",
    "checkpoint_dir",
    "lock_projection",
    "log_end",
    "now_ms",
    "parked",
    "parked_dir",
    "progress",
    "read_checkpoint",
    "read_park",
    "read_parks",
    "remove_park",
    "sweep_temp_files",
    "write_checkpoint",
    "write_park",
]

PROJECTOR = "file"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def checkpoint_dir(settings: Settings) -> Path:
    return settings.data_dir / "checkpoints"


def parked_dir(settings: Settings) -> Path:
    return checkpoint_dir(settings) / "parked"


def _load(path: Path) -> Any:
    raw = read_file(path)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CorruptSnapshot(str(path), f"not JSON: {e}") from e


def lock_projection(settings: Settings) -> int:
    """Take the file projection's lock (one projector or replay at a time); return its fd."""
    directory = checkpoint_dir(settings)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "file.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SnapshotUnavailable(f"cannot open {directory}/file.lock: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ProjectorBusy(
            f"another process projects files in {settings.data_dir} (it holds file.lock)"
        ) from None
    return fd


def check_partitions(settings: Settings) -> None:
    """PartitionMismatch if the log was made with another partition count (read-only)."""
    marker = settings.log_dir / "PARTITIONS"
    with contextlib.suppress(FileNotFoundError):
        held = int(marker.read_text().strip() or 0)
        if held != settings.partitions:
            raise PartitionMismatch(
                f"TRADELOG_PARTITIONS is {settings.partitions} but {settings.log_dir} "
                f"was made with {held}"
            )


def sweep_temp_files(settings: Settings) -> None:
    """Remove temp files a killed projector left behind (we hold the lock: none is live)."""
    for directory in (settings.snapshot_dir, checkpoint_dir(settings), parked_dir(settings)):
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(directory):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(directory / name)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    heartbeat: int = 0  # ms since the epoch; 0 when the projector never ran
    pid: int = 0


def read_checkpoint(settings: Settings) -> Checkpoint:
    """The durable checkpoint; an empty one if the projector never wrote one."""
    path = checkpoint_dir(settings) / f"{PROJECTOR}.json"
    raw = _load(path)
    if raw is None:
        return Checkpoint()
    try:
        positions = {int(p): int(o) for p, o in raw["positions"].items()}
        return Checkpoint(positions, int(raw.get("heartbeat", 0)), int(raw.get("pid", 0)))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptSnapshot(str(path), f"not a checkpoint: {e!r}") from e


def write_checkpoint(settings: Settings, cp: Checkpoint, *, sync: bool = True) -> None:
    """Replace the checkpoint atomically.

    Its directory is not synced: if a power cut brings the previous checkpoint
    back, the projector re-reads a little and skips it by version.
    """
    directory = checkpoint_dir(settings)
    make_dirs(directory, sync=sync)
    body = {
        "projector": PROJECTOR,
        "positions": {str(p): o for p, o in sorted(cp.positions.items())},
        "heartbeat": cp.heartbeat,
        "pid": cp.pid,
    }
    write_atomic(directory / f"{PROJECTOR}.json", orjson.dumps(body), sync=sync)


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
    raw = _load(path)
    if raw is None:
        return None
    try:
        return ParkRecord.from_json(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptSnapshot(str(path), f"not a dead-letter record: {e!r}") from e


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


def parked(settings: Settings) -> list[dict[str, Any]]:
    """The parked accounts, for health: account, version, error, events waiting."""
    return [r.summary() for r in read_parks(settings).values()]


def progress(settings: Settings) -> dict[str, Any]:
    """The file projector's positions, lag per partition against the log's end, heartbeat."""
    cp = read_checkpoint(settings)
    ends = log_ends(settings)
    lag = {p: max(0, end - cp.positions.get(p, 0)) for p, end in ends.items()}
    now = now_ms()
    return {
        "projector": PROJECTOR,
        "positions": {p: cp.positions.get(p, 0) for p in ends},
        "ends": ends,
        "lag": lag,
        "lag_total": sum(lag.values()),
        "heartbeat": cp.heartbeat or None,
        "heartbeat_age_ms": now - cp.heartbeat if cp.heartbeat else None,
        "pid": cp.pid or None,
        "parked": len(read_parks(settings)),
    }
