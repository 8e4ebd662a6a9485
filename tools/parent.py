"""A child process that dies with its parent: the kernel tells it (PR_SET_PDEATHSIG).

`up` starts its children so, a Redis projector group its shares, and `serve` its
uvicorn workers: a parent killed -9 would otherwise leave them running, holding
their locks, partitions or port with no supervisor.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal

__all__ = ["die_with_parent", "die_with_spawning_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when `parent` dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def die_with_spawning_parent() -> None:
    """In a process multiprocessing started (a uvicorn worker of several), die with
    the process that started it; elsewhere nothing."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)
