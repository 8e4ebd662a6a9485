"""The command side saved with the log position it holds, so a writer starts without
reading its partitions from the beginning.

A writer's first append to a partition reads every event before it (state.py):
on a long log that is seconds per partition (about 16 µs an event), and an API
restarted on a million events would stall its first writes for as long. So a
committer saves its PartitionState now and then, with the position it reflects
(the next offset, the segment and byte where its line starts) and the id of the
event before it, in `log/pNN/command-state.json`. A writer that opens the
partition loads it and reads only what follows.

The file is only a shortcut: it is written without fsync and trusted only if the
log still holds, byte for byte, what it was saved from: the event it names just
before the position, and a CRC-32 of everything before it (read again at load,
far faster than parsing it). Anything else (missing, unreadable, of another
format, a log cut shorter, rewritten or damaged since) and the partition is read
from the beginning, as without it, so a damaged line is still found and named.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from .segments import Position, segment_bases, segment_path
from .state import AccountState, Findings, PartitionState, Receipt
from .tail_scan import last_line

__all__ = ["Mark", "holds", "load_state", "save_state"]

log = logging.getLogger("tradelog.writer")

NAME = "command-state.json"
_FORMAT = 1  # a change to what PartitionState.observe keeps must change this (and _Saved)
_CHUNK = 4 << 20
_START = Position(0, 0, 0, 0)

# A position and the CRC-32 of the partition's bytes before it: saving again goes on
# from the last mark, so a save reads only what was appended since, not the whole log.
Mark = tuple[Position, int]


def save_state(
    pdir: Path, at: Position, last_id: str, state: PartitionState, since: Mark | None
) -> Mark | None:
    """Save `state`, which holds every event before `at` (the last one `last_id`);
    return the mark to pass as `since` next time (None if the log could not be read)."""
    crc = _prefix_crc(pdir, at, since or (_START, 0))
    if crc is None:
        return None
    accounts = {
        a: [s.version, s.offers, s.friends, s.import_sha] for a, s in state.accounts.items()
    }
    receipts = [
        [a, key, r.event_id, r.type, r.version, r.offset, r.ts,
         [r.findings.operation, r.findings.previous_state, r.findings.state,
          list(r.findings.removed)]]
        for (a, key), r in state.receipts.items()
    ]  # fmt: skip
    body = {
        "format": _FORMAT,
        "position": [at.offset, at.base, at.pos, at.line],
        "last_id": last_id,
        "crc": crc,
        "accounts": accounts,
        "receipts": receipts,
    }
    path = pdir / NAME
    tmp = pdir / f".{NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_bytes(orjson.dumps(body))
        os.replace(tmp, path)
    except (OSError, TypeError) as e:  # TypeError: a value orjson cannot encode
        log.warning("cannot save the command side of %s: %s", pdir, e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return at, crc


class _Saved(BaseModel):
    """The file, as written by save_state: anything else is not trusted."""

    model_config = ConfigDict(strict=True)

    format: Literal[1]
    position: tuple[int, int, int, int]
    last_id: str
    crc: int
    accounts: dict[str, tuple[int, dict[str, Any], dict[str, Any], str | None]]
    receipts: list[tuple[str, str, str, str, int, int, str, tuple[str, Any, Any, list[str]]]]


def load_state(pdir: Path) -> tuple[Mark, PartitionState] | None:
    """The saved state and its mark (position and CRC), if the log still holds it."""
    _sweep(pdir)
    try:
        raw = (pdir / NAME).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("cannot read the command side of %s: %s", pdir, e)
        return None
    try:
        saved = _Saved.model_validate_json(raw)
    except ValidationError as e:
        log.warning("ignoring %s in %s: not as saved (%d errors)", NAME, pdir, e.error_count())
        return None
    at = Position(*saved.position)
    if at.offset and not (holds(pdir, at, saved.last_id) and _prefix_crc(pdir, at) == saved.crc):
        log.warning("ignoring %s in %s: the log no longer holds what it names", NAME, pdir)
        return None
    return (at, saved.crc), _state(saved)


def _state(saved: _Saved) -> PartitionState:
    state = PartitionState()
    for account, (version, offers, friends, sha) in saved.accounts.items():
        state.accounts[account] = AccountState(version, offers, friends, sha)
    for account, key, event_id, kind, version, offset, ts, found in saved.receipts:
        findings = Findings(found[0], found[1], found[2], tuple(found[3]))
        state.receipts[(account, key)] = Receipt(event_id, kind, version, offset, ts, findings)
    return state


def _sweep(pdir: Path) -> None:
    """Remove temp files of saves that a crash cut short (their process is gone)."""
    for tmp in pdir.glob(f".{NAME}.*.tmp"):
        pid = tmp.name[len(NAME) + 2 : -4]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prefix_crc(pdir: Path, at: Position, since: Mark = (_START, 0)) -> int | None:
    """CRC-32 of the partition's bytes before `at`, segment after segment, going on from
    `since`; None if the log is shorter."""
    start, crc = since
    try:
        for base in segment_bases(pdir):
            if base < start.base:
                continue
            if base > at.base:
                break
            with open(segment_path(pdir, base), "rb") as f:
                if base == start.base:
                    f.seek(start.pos)
                left = at.pos - f.tell() if base == at.base else -1
                while left:
                    chunk = f.read(_CHUNK if left < 0 else min(_CHUNK, left))
                    if not chunk:
                        if left > 0:
                            return None
                        break
                    crc = zlib.crc32(chunk, crc)
                    left = left - len(chunk) if left > 0 else left
    except OSError:
        return None
    return crc


def holds(pdir: Path, at: Position, last_id: str) -> bool:
    """True if the line before `at` is the event `last_id`, at offset at.offset - 1."""
    if at.pos == 0:  # a segment's start: it is named by its first offset
        return segment_path(pdir, at.base).exists() and at.base == at.offset
    try:
        with open(segment_path(pdir, at.base), "rb") as f:
            found = last_line(f, at.pos)
    except OSError:
        return False
    if found is None or found[0] != at.pos - 1:  # no line ends right there (a shorter log)
        return False
    try:
        event = orjson.loads(found[1])
        return bool(event["id"] == last_id and event["offset"] == at.offset - 1)
    except (orjson.JSONDecodeError, KeyError, TypeError):  # not that event, or no event
        return False
