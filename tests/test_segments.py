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


def write_log(pdir: Path, sizes: list[list[int]], torn: bytes, rolled: bool = False) -> int:
    """Segments of lines padded to `sizes` (one list per segment), each line naming its
    offset; `torn` after the last, or in a new empty segment if `rolled`. Returns the
    log's end offset."""
    offset = 0
    for lines in sizes:
        with open(segment_path(pdir, offset), "wb") as f:
            for size in lines:
                f.write(orjson.dumps({"offset": offset, "pad": "x" * size}) + b"\n")
                offset += 1
    last = offset if rolled else offset - len(sizes[-1])
    with open(segment_path(pdir, last), "ab") as f:
        f.write(torn)
    return offset


def write_lines(pdir: Path, offsets: list[int], base: int = 0) -> None:
    """One segment named `base` whose lines name `offsets` (a log damaged by hand)."""
    lines = [orjson.dumps({"offset": o, "pad": "x" * 30}) + b"\n" for o in offsets]
    segment_path(pdir, base).write_bytes(b"".join(lines))


def place(pdir: Path, offset: int) -> tuple[int, int, int, int]:
    cursor = Cursor(pdir, 0, offset)
    try:
        return cursor.next_offset, cursor.base, cursor.pos, cursor.line
    finally:
        cursor.close()


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=30), min_size=1, max_size=4),
    torn=st.one_of(
        st.sampled_from([b"", b"{", b'{"offset": 99, "pad": "x', b"\r"]),
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    ),
    rolled=st.booleans(),
    chunk=st.integers(1, 400),
    back_chunk=st.integers(1, 400),
)
def test_a_seek_back_from_the_end_stands_where_a_seek_forward_does(
    sizes: list[list[int]], torn: bytes, rolled: bool, chunk: int, back_chunk: int
) -> None:
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        pdir = Path(tmp)
        end = write_log(pdir, sizes, torn, rolled)
        mp.setattr(segments, "_CHUNK", chunk)  # lines longer than a read, both ways
        mp.setattr(tail_scan, "_BACK_CHUNK", back_chunk)
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


@pytest.mark.parametrize(
    ("offsets", "base"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 5], 0),  # the last line doubles an earlier one
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 1000], 0),  # the last line names a wrong offset
        (list(range(100, 110)), 0),  # the segment's name disagrees with its lines
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 8], 0),  # the last line doubled
    ],
)
def test_a_count_gone_wrong_near_the_end_is_read_as_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offsets: list[int], base: int
) -> None:
    """Where the lines near the landing point, or the segment's first, disagree with
    the last line's offset, the seek reads forward, and a read then says what is wrong."""
    write_lines(tmp_path, offsets, base)
    ends = range(len(offsets) + 3) if offsets[-1] < 100 else [1001, 110, 9, 5]
    both = [place(tmp_path, offset) for offset in ends]
    monkeypatch.setattr(Cursor, "_seek_back", lambda self, offset: None)
    assert both == [place(tmp_path, offset) for offset in ends]
