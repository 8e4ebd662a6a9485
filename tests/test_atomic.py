"""Atomic replacement of projection files: temp files, spares exchanged in place, reads."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eventlog._exceptions import SnapshotUnavailable
from projections import atomic, durable, fscalls, inode_pool, whole_reads
from projections.inode_pool import InodePool


def write(path: Path, data: bytes) -> None:
    atomic.write_atomic(path, data, spare=True)


@pytest.fixture(autouse=True)
def fine_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exchanges here come a moment before the syncs that cover them: no margin for a
    coarse kernel clock, or they would count as after."""
    monkeypatch.setattr(atomic, "_TICK_S", 0.0)


@pytest.fixture(autouse=True)
def nothing_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_retired", set())
    monkeypatch.setattr(atomic, "_pool", InodePool())


def pooled(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name.startswith(".pool-")}


def spare_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.spare")


def test_a_rested_spare_is_overwritten_in_place_and_swapped_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installs: list[str]
) -> None:
    assert fscalls.can_exchange()  # Linux with glibc: the spare path is the one taken
    monkeypatch.setattr(atomic, "SPARE_REST_S", 0.0)
    path = tmp_path / "x.json"
    write(path, b"one")  # a first write: nothing to exchange with, a temp file
    first = path.stat().st_ino
    assert not spare_of(path).exists()
    write(path, b"two")  # the spare is made, and takes the old version
    second = path.stat().st_ino
    assert second != first and spare_of(path).stat().st_ino == first
    assert spare_of(path).read_bytes() == b"one"
    durable.fsync_dir(tmp_path)  # the exchange is durable: the spare may be overwritten
    write(path, b"three, longer")  # no new inode from now on: the two take turns
    assert (path.stat().st_ino, spare_of(path).stat().st_ino) == (first, second)
    durable.fsync_dir(tmp_path)
    write(path, b"4")  # shorter than what the spare held: cut to length
    assert (path.stat().st_ino, spare_of(path).stat().st_ino) == (second, first)
    assert path.read_bytes() == b"4" and spare_of(path).read_bytes() == b"three, longer"
    assert installs == ["x.json"] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.json.spare", "x.json"]


@pytest.mark.parametrize(
    ("rest_s", "synced"),
    [(3600.0, True), (0.0, False)],
    ids=["still-resting", "exchange-not-yet-durable"],
)
def test_a_spare_is_left_alone_until_it_rested_and_its_exchange_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rest_s: float, synced: bool
) -> None:
    monkeypatch.setattr(atomic, "SPARE_REST_S", rest_s)
    path = tmp_path / "x.json"
    write(path, b"one")
    write(path, b"two")  # an empty new spare has no reader: used at once, it holds "one"
    if synced:
        durable.fsync_dir(tmp_path)
    held = spare_of(path).stat()
    write(path, b"three")  # a reader may hold it, or a power cut undo its exchange
    after = spare_of(path).stat()
    assert (after.st_ino, after.st_mtime_ns) == (held.st_ino, held.st_mtime_ns)
    assert path.read_bytes() == b"three" and spare_of(path).read_bytes() == b"one"
    assert [p.read_bytes() for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [b"two"]
    if not synced:
        durable.sync_all(tmp_path)  # one flush of the filesystem counts as a sync
        write(path, b"four")
        assert path.stat().st_ino == held.st_ino and path.read_bytes() == b"four"


def test_a_busy_file_is_written_into_a_rested_pool_inode_and_no_inode_is_made_or_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installs: list[str]
) -> None:
    monkeypatch.setattr(atomic, "SPARE_REST_S", 0.0)
    monkeypatch.setattr(atomic, "_open_spare", lambda *args: (-1, 0))  # the spare rests
    path = tmp_path / "x.json"
    write(path, b"one")  # a first write: a new file, renamed
    write(path, b"two")  # a pool inode is made, and takes "one" out of place
    [(first, held)] = pooled(tmp_path).items()
    assert held == b"one" and path.read_bytes() == b"two"
    write(path, b"three")  # "one" has not been synced out of place yet: another is made
    kept = pooled(tmp_path)
    [second] = set(kept) - {first}
    assert kept == {first: b"one", second: b"two"}
    durable.fsync_dir(tmp_path)
    inode = (tmp_path / first).stat().st_ino
    write(path, b"four")  # the oldest has rested and its exchange is durable: reused
    assert path.stat().st_ino == inode and path.read_bytes() == b"four"
    assert pooled(tmp_path) == {first: b"three", second: b"two"}  # the replaced one rests
    other = tmp_path / "y.json"  # x's rested pool inode is never given to another file
    write(other, b"y1")
    write(other, b"y2")
    assert other.stat().st_ino not in {(tmp_path / n).stat().st_ino for n in (first, second)}
    assert path.read_bytes() == b"four" and pooled(tmp_path)[second] == b"two"
    assert installs == ["x.json"] * 4 + ["y.json"] * 2
    atomic.drop_temps()  # a clean stop removes the pool (a crash leaves it to the sweep)
    assert first.startswith(".") and first.endswith(".tmp")  # what sweep_temp_files removes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "y.json"]


def test_a_pool_inode_is_not_written_over_while_it_rests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "SPARE_REST_S", 3600.0)
    path = tmp_path / "x.json"
    write(path, b"one")
    write(path, b"two")
    durable.fsync_dir(tmp_path)
    with open(path, "rb") as reader:  # a reader of "two" when it is replaced
        write(path, b"three")  # the spare rests: a new pool inode, which takes "two"
        durable.fsync_dir(tmp_path)
        write(path, b"four")  # "two" rests: another new one
        write(path, b"five")
        assert reader.read() == b"two"
    assert sorted(pooled(tmp_path).values()) == [b"four", b"three", b"two"]
    assert path.read_bytes() == b"five" and len(atomic._pool) == 3
    atomic.retire()  # nothing to free: the pool keeps them
    assert sorted(pooled(tmp_path).values()) == [b"four", b"three", b"two"]


def test_what_a_full_pool_cannot_keep_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "SPARE_REST_S", 3600.0)
    monkeypatch.setattr(inode_pool, "POOL_FILES", 1)
    path = tmp_path / "x.json"
    write(path, b"one")
    write(path, b"two")
    write(path, b"three")  # the pool keeps "two"
    write(path, b"four")  # full: "two", the oldest, is let go and waits to be freed
    assert sorted(pooled(tmp_path).values()) == [b"three", b"two"]
    atomic.retire()
    assert list(pooled(tmp_path).values()) == [b"three"] and path.read_bytes() == b"four"
    names = sorted(p.name for p in tmp_path.iterdir())  # no temp file made for x
    assert names == sorted([".x.json.spare", *pooled(tmp_path), "x.json"])


def test_a_filesystem_that_cannot_exchange_gets_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "SPARE_REST_S", 0.0)
    monkeypatch.setattr(atomic, "_exchanging", True)

    def refuse(a: str, b: str) -> None:
        raise OSError(errno.EINVAL, "exchange not supported")

    monkeypatch.setattr(fscalls, "exchange", refuse)
    path = tmp_path / "x.json"
    write(path, b"one")
    durable.fsync_dir(tmp_path)
    write(path, b"two")  # staged in the spare, then renamed over the file instead
    assert path.read_bytes() == b"two" and not spare_of(path).exists()
    assert atomic._exchanging is False
    write(path, b"three")
    assert path.read_bytes() == b"three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write(path, b"one")
    with pytest.raises(SnapshotUnavailable, match="cannot write"):
        atomic.write_atomic(tmp_path / "missing" / "y.json", b"two")
    assert path.read_bytes() == b"one"


def test_a_file_that_changed_while_it_was_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b"{}")
    inode = path.stat().st_ino
    # (opened, then the name after the read): moved during the first read, not the second
    mtimes = iter([1, 2, 3, 3])
    calls: list[int] = []

    def stat_of(mtime: int) -> Any:
        return SimpleNamespace(st_mtime_ns=mtime, st_ino=inode, st_ctime_ns=7, st_size=2)

    def fstat(fd: int) -> Any:
        calls.append(fd)
        return stat_of(next(mtimes))

    monkeypatch.setattr(os, "fstat", fstat)
    monkeypatch.setattr(os, "stat", lambda *args, **kwargs: stat_of(next(mtimes)))
    assert whole_reads.read_file(path) == b"{}"
    assert len(calls) == 2

    ticks = itertools.count()
    monkeypatch.setattr(os, "fstat", lambda fd: stat_of(next(ticks)))
    monkeypatch.setattr(os, "stat", lambda *args, **kwargs: stat_of(next(ticks)))
    with pytest.raises(SnapshotUnavailable, match="kept changing"):
        whole_reads.read_file(path)
    monkeypatch.undo()
    assert whole_reads.read_file(tmp_path / "absent.json") is None


def test_a_version_cut_short_within_one_clock_tick_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same mtime before and after (a coarse clock), but the file is not the size
    read any more, or its ctime moved: read again."""
    path = tmp_path / "x.json"
    path.write_bytes(b"{}")
    inode = path.stat().st_ino
    seen = iter(
        [
            SimpleNamespace(st_mtime_ns=5, st_ino=inode, st_ctime_ns=5, st_size=9),  # cut
            SimpleNamespace(st_mtime_ns=5, st_ino=inode, st_ctime_ns=6, st_size=2),  # ctime
            SimpleNamespace(st_mtime_ns=5, st_ino=inode, st_ctime_ns=5, st_size=2),
        ]
    )
    real_stat = os.stat
    real_fstat = os.fstat

    def fstat(fd: int) -> Any:
        st = real_fstat(fd)  # (other code may ask meanwhile: only the inode is faked)
        return SimpleNamespace(st_mtime_ns=5, st_ino=inode, st_ctime_ns=5, st_size=st.st_size)

    monkeypatch.setattr(os, "fstat", fstat)
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: next(seen) if p == path else real_stat(p))
    data = whole_reads.read_file(path)
    monkeypatch.undo()
    assert data == b"{}"
    with pytest.raises(StopIteration):
        next(seen)  # three reads: the first two were refused


def test_a_reader_never_keeps_an_inode_its_file_no_longer_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that opened a.json and stalled: meanwhile a's next version was exchanged
    in, and the inode the reader holds was written over (by anything: the pool gives
    it only to a's later versions). Its mtime does not move while it is read; the name
    no longer holding it is what tells."""
    path = tmp_path / "a.json"
    path.write_bytes(b"a: one")
    pooled = tmp_path / ".pool-1.1.tmp"
    pooled.write_bytes(b"a: two")
    real_open = open
    opened: list[Any] = []

    def stalled(file: Any, mode: str = "r", *args: Any) -> Any:
        f = real_open(file, mode, *args)
        if not opened:
            opened.append(file)
            fscalls.exchange(str(pooled), str(path))  # a's next version in place
            pooled.write_bytes(b"b: SECRET")  # the inode the reader holds, given to b
        return f

    monkeypatch.setattr(whole_reads, "open", stalled, raising=False)
    assert whole_reads.read_file(path) == b"a: two"
    assert opened == [path]


def test_a_pool_inode_is_cut_to_what_it_holds_not_to_what_was_recorded(
    tmp_path: Path,
) -> None:
    pool = InodePool()
    path = tmp_path / ".pool-a.tmp"
    path.write_bytes(b"x" * 300)
    target = str(tmp_path / "x.json")
    assert pool.give(str(path), target, 100) == []  # recorded smaller than it is
    durable.fsync_dir(tmp_path)
    taken, fd, held = pool.take(target, 0.0, 0.0)
    os.close(fd)
    assert (taken, held) == (str(path), 300)


def test_the_pool_keeps_within_its_bounds_letting_the_oldest_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inode_pool, "FILE_POOL", 2)
    monkeypatch.setattr(inode_pool, "POOL_FILES", 3)
    monkeypatch.setattr(inode_pool, "POOL_BYTES", 16 * 1000)
    pool = InodePool()
    x, y = str(tmp_path / "x.json"), str(tmp_path / "y.json")
    names = [str(tmp_path / f".pool-{i}.tmp") for i in range(6)]
    assert pool.give(names[0], x, 100) == []
    assert pool.give(names[1], x, 100) == []
    assert pool.give(names[2], x, 100) == [names[2]]  # x keeps 2 at most
    assert pool.give(names[3], y, 1001) == [names[3]]  # over a 16th of the bytes
    assert pool.give(names[4], y, 900) == []
    assert pool.give(names[5], y, 900) == [names[0]]  # a 4th: the oldest, x's, goes
    assert len(pool) == 3
    fresh, fd, held = pool.take(str(tmp_path / "z.json"), 0.0, 0.0)  # z has none: new
    os.close(fd)
    assert held == 0 and fresh not in names and os.path.dirname(fresh) == str(tmp_path)


def test_a_file_keeps_no_more_bytes_than_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inode_pool, "FILE_BYTES", 1500)
    pool = InodePool()
    x, y = str(tmp_path / "x.json"), str(tmp_path / "y.json")
    names = [str(tmp_path / f".pool-{i}.tmp") for i in range(4)]
    assert pool.give(names[0], x, 1000) == []
    assert pool.give(names[1], x, 600) == [names[1]]  # x would hold 1600
    assert pool.give(names[2], x, 400) == []
    assert pool.give(names[3], y, 1000) == []  # y's share is its own
    assert len(pool) == 3
