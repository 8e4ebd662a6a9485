"""Reading a segment back from its end: its last complete line, and where the line
so many lines before its end begins. A long segment then costs only its tail:
where the log ends (log_end.py), and a cursor's seek to an offset near the end
(line_back).
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import orjson

__all__ = ["last_line", "line_back", "lines_back"]

_BACK_CHUNK = 1 << 20  # bytes read at a time, going back


def last_line(f: BinaryIO, end: int) -> tuple[int, bytes] | None:
    """The last complete line of `f` before byte `end`: where its newline is, and the
    line without it; None if there is none. Reads back from `end`, doubling until the
    whole line is in, so a long file costs only its tail."""
    want = 1 << 16
    while True:
        start = max(0, end - want)
        f.seek(start)
        block = f.read(end - start)
        stop = block.rfind(b"\n")  # bytes after it are a torn tail, not a line
        if stop < 0 and start == 0:
            return None
        if stop >= 0:
            begin = block.rfind(b"\n", 0, stop) + 1
            if begin > 0 or start == 0:
                return start + stop, block[begin:stop]
        want *= 2


def lines_back(f: BinaryIO, end: int, n: int) -> int | None:
    """Where the line `n` lines before byte `end` begins (`end` just after a newline,
    or 0); None if fewer than `n` lines come before it."""
    if n == 0:
        return end
    want = n + 1  # the line begins after the (n + 1)th newline back (the first: end - 1)
    pos = end
    while pos > 0:
        start = max(0, pos - _BACK_CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        count = block.count(b"\n")
        if count >= want:
            i = len(block)
            for _ in range(want):
                i = block.rfind(b"\n", 0, i)
            return start + i + 1
        want -= count
        pos = start
    return 0 if want == 1 else None  # n found: the file's first line, else too few


def line_back(f: BinaryIO, base: int, offset: int) -> tuple[int, int] | None:
    """Where line `offset` begins in segment `f` (named `base`), read back from the
    end: (offset, byte), or (the end's offset, its byte) past the end, as a forward
    seek stands. None where the start is nearer, or where the lines read do not agree
    with their count (a forward seek then reads and says what is wrong). Unlike a
    forward count, it cannot see lines missing or doubled well before where it lands:
    the events read from there are the right ones."""
    try:
        found = last_line(f, f.seek(0, os.SEEK_END))
        if found is None:
            return None
        last = _offset_of(found[1])
        if type(last) is not int or last < base:
            return None
        target = min(offset, last + 1)
        back, lines = last + 1 - target, last + 1 - base
        if 2 * back > lines:
            return None
        pos = lines_back(f, found[0] + 1, back)
        if pos is None or not _agree(f, pos, target, base):
            return None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return target, pos


def _offset_of(line: bytes) -> Any:
    return orjson.loads(line)["offset"]


def _agree(f: BinaryIO, pos: int, target: int, base: int) -> bool:
    """Whether the lines about byte `pos` (where line `target` begins, or the end)
    name their offsets, and the segment's first line its name: a count gone wrong
    (lines cut out or doubled by hand, a segment misnamed) shows there."""
    f.seek(pos)
    at = f.readline()
    if at.endswith(b"\n") and _offset_of(at) != target:
        return False
    before = pos
    for want in (target - 1, target - 2):  # the two lines before it
        if want < base:
            break
        found = last_line(f, before)
        if found is None or _offset_of(found[1]) != want:
            return False
        before = found[0]
    f.seek(0)
    return bool(_offset_of(f.readline()) == base)
