"""One flush for a whole batch of files: syncfs(2) on the filesystem holding them.

A batch of snapshots written with an fsync each costs one journal commit per
file; writing them all, then one syncfs, then renaming them all makes every
temp file durable before any rename, as temp + fsync + rename does, at the cost
of one commit. Linux only (glibc); elsewhere `available()` is False and callers
fsync file by file.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["available", "syncfs"]

_syncfs: Callable[[int], int] | None
try:
    _fn = ctypes.CDLL(None, use_errno=True).syncfs
    _fn.argtypes = [ctypes.c_int]
    _fn.restype = ctypes.c_int
    _syncfs = _fn
except (AttributeError, OSError):  # not glibc, or no syncfs
    _syncfs = None


def available() -> bool:
    return _syncfs is not None


def syncfs(directory: Path) -> None:
    """Flush the filesystem holding `directory` and wait for it; OSError on failure."""
    if _syncfs is None:
        raise OSError("syncfs is not available here")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs {directory}: {os.strerror(errno)}")
    finally:
        os.close(fd)
