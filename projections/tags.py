"""A snapshot's tag: what the file projector keeps with a snapshot beyond its document.

The fold orders offers by a score the document cannot always give back (an
offer without a readable `updated_at` is scored by the time of the event that
last wrote it). Those scores are kept in an extended attribute of the
snapshot's inode, `user.tradelog`: written before the file is put in place and
made durable with it, so it changes atomically with the document, and the file
itself holds exactly the document GET answers.

A tag names the version it belongs to (`<version>\\n` then the scores as
zlib-compressed JSON): an inode written again without one (by a release before
tags, which keeps spare inodes too) keeps a tag of another version, which
readers ignore. A snapshot whose tag is absent or of another version was written
in the layout before tags, with the scores in a reserved last key of the
document (snapshots.py); so is one whose scores would not fit in an attribute
(TAG_MAX), or where the filesystem takes none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import zlib

import orjson

from eventlog._exceptions import CorruptSnapshot

from .inode_pool import open_new

__all__ = [
    "ATTR",
    "TagRefused",
    "can_tag",
    "drop_tag",
    "make_tag",
    "read_scores",
    "read_tag",
    "tag_version",
    "write_tag",
]

ATTR = "user.tradelog"
TAG_MAX = 3072  # bytes: ext4 keeps all of an inode's attributes in one 4 KiB block
_NONE = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
_REFUSED = (errno.ENOSPC, errno.E2BIG, errno.ENOTSUP, errno.EOPNOTSUPP)
_probed: dict[str, bool] = {}  # directory -> whether its files take the tag


class TagRefused(Exception):
    """Raised when a file will not take a tag (too big for its filesystem, or none)."""


def can_tag(directory: str) -> bool:
    """Whether files in `directory` take user extended attributes (probed once, with a
    temp file the sweep removes should a crash leave it)."""
    ok = _probed.get(directory)
    if ok is None:
        # Per thread: the projector's writer threads may all ask at its first batch.
        probe = os.path.join(directory, f".tag-probe.{threading.get_ident()}.{os.getpid()}.tmp")
        try:
            fd = open_new(probe)
            try:
                os.setxattr(fd, ATTR, b"0\n")
                ok = True
            finally:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(probe)
        except OSError as e:
            if e.errno not in _NONE:
                return False  # no answer (the directory missing, a race): ask again later
            ok = False
        _probed[directory] = ok
    return ok


def make_tag(version: int, scores: dict[str, int]) -> bytes | None:
    """The tag of a snapshot at `version` keeping `scores`; None if it is too big."""
    tag = b"%d\n" % version + zlib.compress(orjson.dumps(scores))
    return tag if len(tag) <= TAG_MAX else None


def tag_version(tag: bytes) -> int | None:
    """The version a tag belongs to (None if it is no tag of ours)."""
    head, sep, _ = tag.partition(b"\n")
    return int(head) if sep and head.isdigit() and len(head) <= 20 else None


def read_scores(tag: bytes, where: str) -> dict[str, int]:
    """The scores a tag keeps; CorruptSnapshot if they cannot be read."""
    try:
        scores = orjson.loads(zlib.decompress(tag.partition(b"\n")[2]))
    except (zlib.error, orjson.JSONDecodeError) as e:
        raise CorruptSnapshot(where, f"its {ATTR} attribute cannot be read: {e}") from e
    if not isinstance(scores, dict):
        raise CorruptSnapshot(where, f"its {ATTR} attribute holds no scores")
    return scores


def write_tag(fd: int, value: bytes) -> None:
    """Tag the open file; TagRefused if it cannot take the tag."""
    try:
        os.setxattr(fd, ATTR, value)
    except OSError as e:
        if e.errno in _REFUSED:
            raise TagRefused(f"{ATTR}: {e}") from e
        raise


def drop_tag(fd: int) -> None:
    """Remove a tag the open file (a reused inode) may still have."""
    try:
        os.removexattr(fd, ATTR)
    except OSError as e:
        if e.errno not in _NONE:
            raise


def read_tag(fd: int) -> bytes | None:
    """The open file's tag; None if it has none."""
    try:
        return os.getxattr(fd, ATTR)
    except OSError as e:
        if e.errno in _NONE:
            return None
        raise
