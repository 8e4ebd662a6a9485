"""A snapshot's tag: what the file projector keeps with a snapshot beyond its document.

The fold orders offers by a score the document cannot always give back (an
offer without a readable `updated_at` is scored by the time of the event that
last wrote it). Those scores are kept in an extended attribute of the
snapshot's inode, `user.tradelog`: written before the file is put in place and
made durable with it, so it changes atomically with the document, and the file
itself holds exactly the document GET answers. Every snapshot written so carries
the tag (`{}` when there is nothing to keep); one without it was written before,
or where the filesystem takes no user attributes, with the scores in a reserved
last key of the document instead (snapshots.py).
"""

from __future__ import annotations

import contextlib
import errno
import os

from .inode_pool import open_new

__all__ = ["ATTR", "can_tag", "read_tag", "write_tag"]

ATTR = "user.tradelog"
_NONE = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
_probed: dict[str, bool] = {}  # directory -> whether its files take the tag


def can_tag(directory: str) -> bool:
    """Whether files in `directory` take user extended attributes (probed once, with a
    temp file the sweep removes should a crash leave it)."""
    ok = _probed.get(directory)
    if ok is None:
        probe = os.path.join(directory, f".tag-probe.{os.getpid()}.tmp")
        try:
            fd = open_new(probe)
        except OSError:
            return False  # the directory is not there yet: ask again once it is
        try:
            os.setxattr(fd, ATTR, b"{}")
            ok = True
        except OSError as e:
            if e.errno not in _NONE:
                raise
            ok = False
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
        _probed[directory] = ok
    return ok


def write_tag(fd: int, value: bytes) -> None:
    os.setxattr(fd, ATTR, value)


def read_tag(fd: int) -> bytes | None:
    """The open file's tag; None if it has none."""
    try:
        return os.getxattr(fd, ATTR)
    except OSError as e:
        if e.errno in _NONE:
            return None
        raise
