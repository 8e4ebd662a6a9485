"""Two Linux filesystem calls Python's os module lacks, through glibc.

- `syncfs(2)`: one flush for a whole batch of files. Writing them all, then one
  syncfs, then renaming them all makes every new file durable before any rename,
  as temp + fsync + rename does, at the cost of one journal commit instead of
  one per file.
- `renameat2(2)` with RENAME_EXCHANGE: swap two names atomically, so a rewritten
  file's previous inode can be kept as the next write's spare (see atomic.py).

Elsewhere (not glibc, or an old one) `available()` / `can_exchange()` are False
and callers fall back to an fsync per file and plain renames.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["available", "can_exchange", "exchange", "syncfs"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _bind(name: str, argtypes: list[type]) -> Callable[..., int] | None:
    try:
        fn = getattr(_libc, name)
    except AttributeError:  # not glibc, or one without it
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_syncfs = _bind("syncfs", [ctypes.c_int])
_renameat2 = _bind(
    "renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
)


def available() -> bool:
    return _syncfs is not None


def can_exchange() -> bool:
    return _renameat2 is not None


def _failed(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what}: {os.strerror(errno)}")


def syncfs(directory: Path, fd: int | None = None) -> None:
    """Flush the filesystem holding `directory` and wait for it; OSError on failure.

    syncfs reports only the write errors the filesystem had since the descriptor it
    is given was opened: a caller that must hear of every one (a failed writeback of
    a line it counts on) passes `fd`, `directory` opened once for good."""
    if _syncfs is None:
        raise OSError("syncfs is not available here")
    own = fd is None
    if fd is None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            raise _failed(f"syncfs {directory}")
    finally:
        if own:
            os.close(fd)


def exchange(a: str, b: str) -> None:
    """Swap the files named `a` and `b` atomically; OSError (with its errno) on failure:
    ENOENT if either is missing, EINVAL where the filesystem cannot exchange."""
    if _renameat2 is None:
        raise OSError("renameat2 is not available here")
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        raise _failed(f"exchange {a} and {b}")
