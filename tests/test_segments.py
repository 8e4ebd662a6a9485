"""A cursor's seek to an offset: read back from the last segment's end when that is
nearer, forward from a segment's start otherwise, and both stand at the same place."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog.segments as segments
import eventlog.tail_scan as tail_scan
from eventlog.segments import Cursor, segment_path


def write_log(pdir: Path, sizes: list[list[int]], torn: bytes) -> int:
    """Segments of lines padded to `sizes` (one list per segment), each line naming its
    offset; `torn` after the last. Returns the log's end offset."""
    offset = 0
    for lines in sizes:
        with open(segment_path(pdir, offset), "wb") as f:
            for size in lines:
                f.write(orjson.dumps({"offset": offset, "pad": "x" * size}) + b"\n")
                offset += 1
    with open(segment_path(pdir, offset - len(sizes[-1])), "ab") as f:
        f.write(torn)
    return offset


def place(pdir: Path, offset: int) -> tuple[int, int, int, int]:
    cursor = Cursor(pdir, 0, offset)
    try:
        return cursor.next_offset, cursor.base, cursor.pos, cursor.line
    finally:
        cursor.close()


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(0, 90), min_size=1, max_size=12), min_size=1, max_size=3),
    torn=st.sampled_from([b"", b"{", b'{"offset": 99, "pad": "x']),
    chunk=st.integers(1, 64),
)
def test_a_seek_back_from_the_end_stands_where_a_seek_forward_does(
    sizes: list[list[int]], torn: bytes, chunk: int
) -> None:
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        pdir = Path(tmp)
        end = write_log(pdir, sizes, torn)
        mp.setattr(segments, "_CHUNK", chunk)  # lines longer than a read, both ways
        mp.setattr(tail_scan, "_BACK_CHUNK", chunk)
        both = [place(pdir, offset) for offset in range(end + 3)]
        mp.setattr(Cursor, "_seek_back", lambda self, offset: None)
        forward = [place(pdir, offset) for offset in range(end + 3)]
    assert both == forward


def test_a_seek_near_the_end_reads_only_the_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 lines; a seek to the last few reads back a few lines, not the segment."""
    write_log(tmp_path, [[40] * 10_000], b"")
    read: list[int] = []
    real_pread = segments.os.pread

    def pread(fd: int, n: int, at: int) -> bytes:
        read.append(n)
        return real_pread(fd, n, at)

    monkeypatch.setattr(segments.os, "pread", pread)
    cursor = Cursor(tmp_path, 0, 9_998)
    try:
        events_at = cursor.next_offset
        assert read == []  # no forward scan
        raw = real_pread(cursor._open() or -1, 200, cursor.pos)
        assert orjson.loads(raw.split(b"\n")[0])["offset"] == events_at == 9_998
    finally:
        cursor.close()
