"""Files replaced whole or not at all, and never torn under a reader.

Every projection file is written the classic way: a temp file in the same
directory, made durable, renamed over the target; a crash leaves the old file or
the new one. For a file rewritten again and again (a snapshot) creating the temp
inode and freeing the replaced one are most of the cost: journal work that
waits on every other fsync of the filesystem. So such a file keeps a **spare**,
`.<name>.spare`: the inode its previous version lived in, overwritten in place
and then swapped with the target by one atomic exchange (fscalls.exchange). No
inode is created or freed; the old version becomes the next spare.

A spare is overwritten only when two things hold; until then a pool file is used.
- It has been out of place for `SPARE_REST_S` (its ctime says when it was
  exchanged): a reader that opened the target just before an exchange still
  holds the spare's inode. `whole_reads.read_file` also reads again if the file changed
  while it was read.
- Its directory was synced since (durable.fsync_dir or sync_all): until then a power
  cut could undo the exchange and leave the target naming the overwritten inode.
Where exchange is not available the temp file is always used.

A file rewritten faster than its spare rests (a busy account) is written into
one of its older versions that has rested, kept in the pool (inode_pool.py),
exchanged with the target, whose old version joins the pool: still no inode
created or freed. Without one, a new pool file is made and exchanged with the
target: the old version is not freed by the replacing call either, but kept, or
left for `retire` (called once the new version is announced) to free. Nothing
a reader may hold is overwritten in place, so any order a crash leaves these
steps in names a whole version.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from eventlog._exceptions import SnapshotUnavailable

from . import durable, fscalls
from .inode_pool import InodePool, open_new
from .tags import TagRefused, drop_tag, write_tag

__all__ = [
    "Staged",
    "drop_temps",
    "install",
    "retire",
    "stage",
    "write_atomic",
]

SPARE_REST_S = 1.0
_TICK_S = 0.02  # kernel timestamps come from a coarse clock: they may lag time.time()
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV)
_exchanging = fscalls.can_exchange()
_pool = InodePool()  # versions out of place, each overwritten once it rested
_retired: set[str] = set()  # versions out of place the pool let go, until `retire`


@dataclass(frozen=True, slots=True)
class Staged:
    """A written file waiting to be put in place."""

    tmp: str
    path: str
    swap: bool  # the spare: exchanged with the target (which becomes the spare)
    out: int = -1  # a pool file's: the size of the version it takes out of place

    @property
    def trade(self) -> bool:
        """A pool file: exchanged with the target, which joins the pool."""
        return self.out >= 0


def stage(
    path: Path | str,
    data: bytes,
    *,
    sync: bool = False,
    spare: bool = False,
    tag: bytes | None = None,
) -> Staged:
    """Write `data` where it waits to replace `path` (fsynced if `sync`), with `tag`
    as its inode's tag (tags.py) if given, else none (TagRefused if the file will not
    take it: nothing is left staged).

    Unsynced, it must be made durable (fscalls.syncfs) before it is installed.
    `spare`: overwrite the target's spare if it has rested (see the module doc).
    """
    target = os.fspath(path)
    head, name = os.path.split(target)
    fd = -1
    tmp = ""
    try:
        held = 0
        if spare and _exchanging:
            tmp = os.path.join(head, f".{name}.spare")
            fd, held = _open_spare(tmp, target, durable.synced_at(head) - _TICK_S)
        swap = fd >= 0
        out = -1  # the size of the version a pool file's exchange takes out of place
        if not swap and spare and _exchanging:
            try:
                out = os.stat(target).st_size
            except FileNotFoundError:
                pass  # a first write: a new file, renamed
            else:
                tmp, fd, held = _pool.take(target, SPARE_REST_S, _TICK_S)
        reused = fd >= 0  # an inode of an earlier version: it may carry its tag
        if fd < 0:  # a new file, renamed: named after this process, so that a crash
            tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")  # leaves it to the sweep
            fd = open_new(tmp)  # (a new inode: a version a reader may hold is never reused)
        try:
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], done)
            if held > len(view):
                os.ftruncate(fd, len(view))
            if tag is not None:
                write_tag(fd, tag)
            elif reused:
                drop_tag(fd)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except (OSError, TagRefused) as e:
        if tmp and not tmp.endswith(".spare"):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, TagRefused):
            raise
        raise SnapshotUnavailable(f"cannot write {target}: {e}") from e
    return Staged(tmp, target, swap, out)


def retire() -> None:
    """Free the versions out of place the pool let go. Call it off the writes' path:
    after announcing them, from the thread that installs them (the projector's own:
    its thread pool only stages, without spares)."""
    for tmp in list(_retired):
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError:
            continue  # tried again at the next retire; never reused meanwhile
        _retired.discard(tmp)


def drop_temps() -> None:
    """Retire, and remove the pool: a clean stop leaves no temp file behind (a crash
    leaves them for sweep_temp_files)."""
    retire()
    _pool.drop()


def _open_spare(spare: str, target: str, durable_before: float) -> tuple[int, int]:
    """The spare opened for overwriting, and its size; fd -1 if it may still be read or
    its exchange may not be durable yet, or if there is no target (a first write)."""
    try:
        fd = os.open(spare, os.O_WRONLY)
    except FileNotFoundError:
        if not os.path.exists(target):
            return -1, 0
        return os.open(spare, os.O_WRONLY | os.O_CREAT, 0o644), 0
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    out_since = st.st_ctime
    if st.st_size and (time.time() - out_since < SPARE_REST_S or out_since >= durable_before):
        os.close(fd)
        return -1, 0
    return fd, st.st_size


def install(staged: Staged) -> None:
    """Put a staged file in place: exchange the spare with the target, or rename the temp."""
    global _exchanging
    try:
        if (staged.swap or staged.trade) and _exchanging:
            try:
                fscalls.exchange(staged.tmp, staged.path)
                # The version taken out of place: kept to write over once it rested,
                # or freed by `retire` (with what the pool lets go to keep it).
                if staged.trade:
                    _retired.update(_pool.give(staged.tmp, staged.path, staged.out))
                return
            except OSError as e:
                if e.errno in _UNSUPPORTED:
                    _exchanging = False  # this filesystem cannot: temp files from now on
                elif e.errno != errno.ENOENT:  # ENOENT: the target went; the rename puts it back
                    raise
        os.replace(staged.tmp, staged.path)
    except OSError as e:
        if not staged.swap:
            with contextlib.suppress(OSError):
                os.unlink(staged.tmp)
        raise SnapshotUnavailable(f"cannot write {staged.path}: {e}") from e


def write_atomic(
    path: Path, data: bytes, *, sync: bool = True, spare: bool = False, tag: bytes | None = None
) -> None:
    """Replace `path` with `data` (and `tag`) durably (stage with fsync, install).

    The directory is not synced here: callers sync it once for a whole batch.
    """
    install(stage(path, data, sync=sync, spare=spare, tag=tag))
