"""Keyed writes that appended nothing, shared by every process appending to a partition.

A removal of absent friends (or an unchanged import) appends no event, so the log
cannot carry its idempotency receipt. Kept in one process's memory only, its retry
reaching the other worker, or the same one after a restart, was decided anew: a
friend added back since was removed (Guarantee 6). So each such receipt is also
appended to `log/pNN/noop-receipts.jsonl`, under the partition lock, and every
committer reads what the others appended there when it reads their events.

The file is synced with the round that answers the write, as its events would be.
It is rewritten with the receipts still in their window once it passes
`COMPACT_BYTES`; readers see a new inode and read it again from the start.
Unlike the log, it only remembers answers: a line that cannot be read is
logged and passed over, never a reason to refuse appends.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from ._exceptions import LogUnavailable
from .marker import fsync_dir
from .state import Findings, NoOp, PartitionState

__all__ = ["NoopReceipts"]

log = logging.getLogger("tradelog.writer")

NAME = "noop-receipts.jsonl"
COMPACT_BYTES = 4 << 20  # about 10,000 receipts; NOOPS_KEPT bounds what is rewritten


class _Line(BaseModel):
    """One receipt as the file holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str
    key: str
    type: str
    asked: str
    operation: str
    previous_state: Any = None
    state: Any = None
    removed: tuple[str, ...] = ()
    ts: str


def _encode(account: str, key: str, noop: NoOp) -> bytes:
    f = noop.findings
    line = _Line(
        account=account, key=key, type=noop.type, asked=noop.asked, operation=f.operation,
        previous_state=f.previous_state, state=f.state, removed=f.removed, ts=noop.ts,
    )  # fmt: skip
    return orjson.dumps(line.model_dump()) + b"\n"


class NoopReceipts:
    """One partition's shared no-op receipts: what this process has read of them, and
    its appends."""

    def __init__(self, pdir: Path) -> None:
        self.path = pdir / NAME
        self._fd: int | None = None
        self._inode = 0
        self._pos = 0  # the end of the last complete line read
        self._partial = 0  # bytes after it at the last read
        self._unsynced = False  # read or appended since the last sync
        self._created = False  # ... and the file is new: its directory is synced too
        # What the last rewrite kept: the next comes past twice that (or COMPACT_BYTES),
        # so that one keeping nearly all (10,000 receipts of long keys pass 4 MiB) is
        # not redone at every append.
        self._kept = 0

    def reset(self) -> None:
        """Read from the start again (the state they go into was rebuilt)."""
        self._close()

    def read(self, state: PartitionState) -> int:
        """Note in `state` the receipts appended since the last read; the bytes of a
        partial last line (a write in progress, or a crash's) left unread."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._close()
            return 0
        except OSError as e:
            raise LogUnavailable(f"cannot read {self.path}: {e}") from e
        if st.st_ino != self._inode:  # rewritten (or new): read from the start
            self._close()
            self._open()
        self._partial = 0
        if self._fd is None or st.st_size <= self._pos:
            return 0
        try:
            chunk = os.pread(self._fd, st.st_size - self._pos, self._pos)
        except OSError as e:
            raise LogUnavailable(f"cannot read {self.path}: {e}") from e
        end = chunk.rfind(b"\n") + 1
        for raw in chunk[:end].splitlines():
            self._note(state, raw)
        if end:  # another process's, which a crash may have left unsynced: synced before
            self._unsynced = True  # a retry is answered from them
        self._pos += end
        self._partial = len(chunk) - end
        return self._partial

    def _note(self, state: PartitionState, raw: bytes) -> None:
        try:
            line = _Line.model_validate_json(raw)
        except ValidationError as e:
            log.warning("%s: passing over a line that is not a receipt: %s", self.path, e)
            return
        findings = Findings(line.operation, line.previous_state, line.state, line.removed)
        noop = NoOp(line.type, line.asked, findings, line.ts)
        state.noted(line.account, line.key, noop, shared=True)

    def append(self, state: PartitionState, fresh: list[tuple[str, str, NoOp]]) -> None:
        """Append the receipts decided in this batch. Hold the partition lock, and read
        the file (`read`) since taking it."""
        if self._fd is None:
            self._open(create=True)
            self._created = True
        assert self._fd is not None
        block = b"".join(_encode(account, key, noop) for account, key, noop in fresh)
        try:
            if self._partial:  # under the lock nobody is mid-write: a crash's leftover
                os.ftruncate(self._fd, self._pos)
                self._partial = 0
            os.pwrite(self._fd, block, self._pos)
        except OSError as e:
            raise LogUnavailable(f"cannot write {self.path}: {e}") from e
        self._pos += len(block)
        self._unsynced = True
        if self._pos > max(COMPACT_BYTES, 2 * self._kept):
            self._compact(state)

    def _compact(self, state: PartitionState) -> None:
        """Rewrite the file with the receipts `state` still keeps (under the lock)."""
        tmp = self.path.with_name(NAME + ".tmp")
        block = b"".join(
            _encode(account, key, noop) for (account, key), noop in state.noops.items()
        )
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, block)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as e:
            raise LogUnavailable(f"cannot rewrite {self.path}: {e}") from e
        self._close()
        self._open()
        self._pos = len(block)
        self._kept = len(block)

    @property
    def unsynced(self) -> bool:
        """Whether receipts were read or appended since the last sync."""
        return self._unsynced

    def sync(self) -> None:
        """Make the receipts read or appended since the last sync durable."""
        if self._unsynced and self._fd is not None:
            try:
                os.fdatasync(self._fd)
                if self._created:
                    fsync_dir(self.path.parent)
            except OSError as e:
                raise LogUnavailable(f"cannot fsync {self.path}: {e}") from e
        self._unsynced = self._created = False

    def _open(self, create: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
            self._inode = os.fstat(self._fd).st_ino
        except FileNotFoundError:
            self._fd, self._inode = None, 0
        except OSError as e:
            raise LogUnavailable(f"cannot open {self.path}: {e}") from e
        self._pos = 0

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._inode, self._pos, self._partial = None, 0, 0, 0

    def close(self) -> None:
        self._close()
