"""The file projector's bookkeeping: its lock and its checkpoint.

`checkpoints/file.lock` is held (flock) by the one process that may write the
file projection: the projector, or a replay of parked accounts.

`checkpoints/file.json` holds, per partition, the next offset to apply, the
heartbeat (ms) and the projector's pid. It is written after the batch's
snapshots are durable, so it never claims an event whose snapshot could still
be lost; an older checkpoint only means redelivery, which versions make
harmless. The parked accounts' records live beside it (see file_parking).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eventlog._exceptions import (
    CorruptSnapshot,
    ProjectorBusy,
    SnapshotUnavailable,
)
from eventlog.log_end import log_end
from eventlog.marker import same_partitions, try_lock
from eventlog.settings import Settings

from .atomic import write_atomic
from .durable import make_dirs
from .whole_reads import read_file

__all__ = [
    "STALLED_MS",
    "Checkpoint",
    "check_partitions",
    "checkpoint_dir",
    "lock_projection",
    "log_end",
    "now_ms",
    "parked_dir",
    "pid_namespace",
    "read_checkpoint",
    "running",
    "sweep_temp_files",
    "write_checkpoint",
]

PROJECTOR = "file"
FRESH_MS = 3000  # a heartbeat younger than this (three beats: daemon.HEARTBEAT_S) is live
# A projector whose last beat is older than this has stopped or stalled, for /ready:
# a long step (a catch-up of big documents) may hold a beat back a few seconds.
STALLED_MS = 10_000


def pid_namespace() -> int:
    """This process's pid namespace (0 if unknown): a pid names a process only in its own."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def checkpoint_dir(settings: Settings) -> Path:
    return settings.data_dir / "checkpoints"


PARKED = os.path.join("checkpoints", "parked")  # in the data dir


def parked_dir(settings: Settings) -> Path:
    return settings.data_dir / PARKED


def load_json(path: Path) -> Any:
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
        fd = try_lock(directory / "file.lock")
    except OSError as e:
        raise SnapshotUnavailable(f"cannot open {directory}/file.lock: {e}") from e
    if fd is None:
        raise ProjectorBusy(
            f"another process projects files in {settings.data_dir} (it holds file.lock)"
        )
    return fd


def check_partitions(settings: Settings) -> None:
    """PartitionMismatch if the log was made with another partition count (read-only)."""
    same_partitions(settings.log_dir, settings.partitions)


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
    pidns: int = 0  # the pid's namespace (pid_namespace), 0 if unknown


def running(cp: Checkpoint, fresh_ms: int = STALLED_MS) -> bool:
    """Whether the projector that wrote `cp` still runs: its heartbeat is fresh and, when
    it runs in this pid namespace, its process alive (a projector killed a moment ago
    still has a fresh heartbeat). In another namespace (a container) its pid says
    nothing here: the heartbeat alone counts."""
    if not cp.heartbeat or now_ms() - cp.heartbeat >= fresh_ms:
        return False
    if cp.pid and cp.pidns and cp.pidns == pid_namespace():
        try:
            os.kill(cp.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, as another user
    return True


def read_checkpoint(settings: Settings) -> Checkpoint:
    """The durable checkpoint; an empty one if the projector never wrote one."""
    path = checkpoint_dir(settings) / f"{PROJECTOR}.json"
    raw = load_json(path)
    if raw is None:
        return Checkpoint()
    try:
        positions = {int(p): int(o) for p, o in raw["positions"].items()}
        return Checkpoint(
            positions,
            int(raw.get("heartbeat", 0)),
            int(raw.get("pid", 0)),
            int(raw.get("pidns", 0)),
        )
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
        "pidns": cp.pidns,
    }
    write_atomic(directory / f"{PROJECTOR}.json", orjson.dumps(body), sync=sync)
