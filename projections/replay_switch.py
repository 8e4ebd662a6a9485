"""What the live file replay's switch stands on: an atomic swap, and a paused projector.

Readers must never find the snapshot directory missing, and the file projector must
not write while the copy is brought level with it. So `negotiations` is swapped in
one system call (rename(2) of a symlink, or renameat2 RENAME_EXCHANGE the first
time, when it is still a real directory), and the projector is found by its lock in
/proc/locks, waited for through its bell, and held still with SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from eventlog._exceptions import ProjectorBusy, SnapshotUnavailable
from eventlog.notify import PROGRESS, Bell
from eventlog.settings import Settings

from .checkpoint import checkpoint_dir, read_checkpoint
from .durable import fsync_dir

__all__ = ["lock_holder", "paused", "renameat2", "switch", "wait_for_projector"]

_PAUSE_WAIT_S = 5.0  # for a paused process to be seen stopped
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def renameat2() -> Callable[..., int]:
    """libc's renameat2, which swaps two paths atomically (RENAME_EXCHANGE)."""
    try:
        fn: Any = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        raise SnapshotUnavailable(
            "this system has no renameat2: the first live switch of a real snapshot "
            "directory cannot be atomic; replay offline once (or make it a symlink)"
        ) from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return cast(Callable[..., int], fn)


def switch(link: Path, fresh: Path) -> Path | None:
    """Point `link` at `fresh` atomically; return the directory it showed before.

    A symlink is replaced by a new one (rename(2) is atomic). A real directory (the
    first switch) is exchanged with the new symlink in one renameat2 call, and then
    sits under the temp name; readers never find `link` missing.
    """
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(fresh.name, tmp)  # relative: the data dir may move
        if link.is_symlink():
            old: Path | None = link.parent / os.readlink(link)
            os.replace(tmp, link)
        elif link.is_dir():
            if renameat2()(_AT_FDCWD, bytes(tmp), _AT_FDCWD, bytes(link), _RENAME_EXCHANGE):
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(link))
            old = tmp
        else:
            os.replace(tmp, link)
            old = None
    except OSError as e:
        raise SnapshotUnavailable(f"cannot switch {link} to {fresh.name}: {e}") from e
    fsync_dir(link.parent)
    return old


def lock_holder(settings: Settings) -> int:
    """The pid holding the file projection's lock, from /proc/locks (never a guess)."""
    path = checkpoint_dir(settings) / "file.lock"
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SnapshotUnavailable(f"cannot find the file projector's process: {e}") from e
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE":
            major, minor, inode = parts[5].split(":")
            same = (int(major, 16), int(minor, 16), int(inode)) == (
                os.major(st.st_dev),
                os.minor(st.st_dev),
                st.st_ino,
            )
            if same and int(parts[4]) != os.getpid():
                return int(parts[4])
    raise ProjectorBusy(
        "the file projection is locked by this process or one that cannot be paused: "
        "stop the file projector, or replay offline"
    )


def wait_for_projector(settings: Settings, ends: dict[int, int], timeout: float) -> None:
    """Until the running file projector's checkpoint reaches `ends` (woken by its bell)."""
    bell = Bell(settings.run_dir, PROGRESS)
    deadline = time.monotonic() + timeout
    try:
        while True:
            cp = read_checkpoint(settings)
            if all(cp.positions.get(p, 0) >= end for p, end in ends.items()):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProjectorBusy(
                    f"the file projector did not reach the copy's end within {timeout:.0f} s"
                )
            bell.wait(min(left, 1.0))  # a missed ring costs a second, never correctness
    finally:
        bell.close()


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP `pid` (it cannot write while stopped), SIGCONT it afterwards, always."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except OSError as e:
        raise ProjectorBusy(f"cannot pause the file projector (pid {pid}): {e}") from e
    try:
        deadline = time.monotonic() + _PAUSE_WAIT_S
        while _state(pid) not in ("T", "t", "X", "Z", None):
            if time.monotonic() > deadline:
                raise ProjectorBusy(f"the file projector (pid {pid}) did not stop")
            time.sleep(0.001)  # the kernel tells only a parent when a process stopped
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
