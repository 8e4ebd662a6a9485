"""A Redis projector's consumer name that outlives the process: a slot held by a lock.

A consumer that starts under the name it had before takes its partition leases
and its pending entries back at once. Under a new name (the pid, say) a
projector restarted after a crash would wait for its own dead leases to run
out, then for its pending entries to idle long enough to be claimed; and a
burst run (`--until-caught-up`) would find every partition taken and stop
having applied nothing. So the name is `<host>-<slot>`, and slot N is whoever
holds the lock file `run/redis-projector.N.lock`: the kernel frees it when the
process dies, even by SIGKILL, and no two live processes on a host share a name.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["Slot", "take_slot"]

log = logging.getLogger("tradelog.projector.redis")


@dataclass(slots=True)
class Slot:
    """The consumer name this process runs as, and the lock that reserves it."""

    name: str
    lock: FileLock | None  # None: the slot was taken; a standby under a one-off name

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def take_slot(run_dir: Path, index: int) -> Slot:
    """Slot `index` if no live process on this host holds it, else a one-off name.

    A process without its slot still works: it reads the partitions whose leases
    are free, and stands by for the others.
    """
    host = socket.gethostname()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / f"redis-projector.{index}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        name = f"{host}-pid{os.getpid()}"
        log.warning("another Redis projector here runs as %s-%d: this one is %s", host, index, name)
        return Slot(name, None)
    return Slot(f"{host}-{index}", lock)
