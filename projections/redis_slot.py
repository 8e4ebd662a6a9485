"""A Redis projector's consumer name that outlives the process: a slot held by a lock.

A consumer that starts under the name it had before takes its partition leases
and its pending entries back at once. Under a new name (the pid, say) a
projector restarted after a crash would wait for its own dead leases to run
out, then for its pending entries to idle long enough to be claimed; and a
burst run (`--until-caught-up`) would find every partition taken and stop
having applied nothing. So the name is `<host>-<slot>`, and slot N is whoever
holds the flock on `run/redis-projector.N.lock`: the kernel drops it when the
process dies, even by SIGKILL, and no two live processes on a host share a name.

A dead slot's consumer may still hold leases and entries on partitions that now
belong to another slot (the process count changed): `adopt` hands them over.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from eventlog._exceptions import RedisUnavailable
from eventlog.keys import Keys
from eventlog.records import as_text

from .redis_scripts import LEASE, Call, Scripts

__all__ = ["Slot", "adopt", "slot_name", "take_slot"]

log = logging.getLogger("tradelog.projector.redis")

_WAIT_S = 5.0  # a predecessor under this name may still be finishing its last batch
_POLL_S = 0.05


@dataclass(slots=True)
class Slot:
    """The consumer name this process runs as, and the open file whose lock reserves it."""

    name: str
    fd: int  # -1: the slot was taken; a standby under a one-off name


def _path(run_dir: Path, index: int) -> str:
    return os.fspath(run_dir / f"redis-projector.{index}.lock")


def _lock(path: str) -> int:
    """The file opened and flocked; -1 if another process holds it."""
    # fcntl rather than the filelock package: that one may fall back to a marker
    # file, which a SIGKILL leaves behind, and the name would be lost for good.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -1
    return fd


def take_slot(run_dir: Path, index: int, wait_s: float = _WAIT_S) -> Slot:
    """Slot `index` once no live process on this host holds it (waiting up to `wait_s`),
    else a one-off name: such a process still reads the partitions whose leases are
    free, and stands by for the others."""
    host = socket.gethostname()
    run_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while (fd := _lock(_path(run_dir, index))) < 0 and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    if fd < 0:
        name = f"{host}-pid{os.getpid()}"
        log.warning("another Redis projector here runs as %s-%d: this one is %s", host, index, name)
        return Slot(name, -1)
    return Slot(slot_name(index), fd)


@contextlib.contextmanager
def _dead(run_dir: Path, name: str) -> Iterator[bool]:
    """True if `name` is a slot of this host that no live process holds; its lock is
    then held until the block ends, so no process starting as `name` meanwhile takes
    the lease or the entries back while they are being taken over."""
    found = re.fullmatch(re.escape(socket.gethostname()) + r"-(\d+)", name)
    path = None if found is None else _path(run_dir, int(found.group(1)))
    fd = _lock(path) if path is not None and os.path.exists(path) else -1
    try:
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)  # closing drops the lock at once: a starting owner waits no more


def slot_name(index: int) -> str:
    return f"{socket.gethostname()}-{index}"


def adopt(client: redis.Redis, keys: Keys, run_dir: Path, owners: Mapping[int, str]) -> None:
    """Give each partition's new owner (partition -> consumer name) what this host's dead
    slots hold there: their leases are released, their pending entries moved over.

    Run before the owners start reading: by a single projector for itself, by a group's
    parent for its shares. A restart under another process count would otherwise wait
    for those leases to expire and the entries to idle.
    """
    try:
        _adopt(client, keys, run_dir, owners)
    except redis.RedisError as e:
        raise RedisUnavailable(f"redis projector: taking over dead consumers: {e}") from e


def _adopt(client: redis.Redis, keys: Keys, run_dir: Path, owners: Mapping[int, str]) -> None:
    group, scripts = keys.group(), Scripts(client)
    for p, owner in owners.items():
        stream = keys.log(p)
        # A slot killed after it took a lease but before it first read the stream is in
        # no consumer list below (an XAUTOCLAIM that claims nothing makes no consumer):
        # its lease would keep the new owner off the partition until it ran out, and a
        # run --until-caught-up, holding no lease there, would stop without it.
        got: Any = client.get(keys.lease(p))
        holder = None if got is None else as_text(got)
        if holder and holder != owner:
            with _dead(run_dir, holder) as dead:
                if dead:
                    _release(scripts, keys, p, holder)
                    log.info("partition %d: %s released the lease of %s (dead)", p, owner, holder)
        try:
            consumers: Any = client.xinfo_consumers(stream, group)
        except redis.ResponseError:  # no stream or group yet: nothing to take over
            continue
        for info in consumers:
            name = as_text(info["name"])
            if name != owner:
                with _dead(run_dir, name) as dead:
                    if dead:
                        _release(scripts, keys, p, name)
                        moved = _take_over(client, stream, group, owner, name)
                        log.info(
                            "partition %d: %s took over from %s (%d pending)", p, owner, name, moved
                        )


def _release(scripts: Scripts, keys: Keys, p: int, name: str) -> None:
    """Let partition `p`'s lease go if `name` holds it."""
    scripts.run([Call(LEASE, [keys.lease(p)], [name, 0])])


def _take_over(client: redis.Redis, stream: str, group: str, owner: str, name: str) -> int:
    """Give `owner` the entries the dead consumer `name` has pending on `stream` (and
    drop `name` from the group); how many moved."""
    moved = 0
    while pending := client.xpending_range(stream, group, "-", "+", 1000, name):
        ids: list[Any] = [entry["message_id"] for entry in pending]
        client.xclaim(stream, group, owner, 0, ids, justid=True)
        moved += len(ids)
    client.xgroup_delconsumer(stream, group, name)
    return moved
