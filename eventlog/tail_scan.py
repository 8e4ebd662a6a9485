"""Reading a segment back from its end: its last complete line, and where the line
so many lines before its end begins. A long segment then costs only its tail:
where the log ends (log_end.py), and a cursor's seek to an offset near the end.
"""

from __future__ import annotations

from typing import BinaryIO

__all__ = ["last_line", "lines_back"]

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
