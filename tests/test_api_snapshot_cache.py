"""The GET path's snapshot copies: served again only while the file is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.snapshot_cache import ENTRY_BYTES, Loaded, SnapshotCache
from projections import atomic, durable


def doc(version: int, text: str = "x") -> bytes:
    """A snapshot as the projector lays one out: the version line near the end."""
    return b'{\n  "text": "%s",\n  "version": %d\n}' % (text.encode(), version)


class Counting:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.loads = 0

    def __call__(self) -> Loaded:
        self.loads += 1
        try:
            body = self.path.read_bytes()
        except FileNotFoundError:
            return None, 0
        return body, len(body)


@pytest.fixture(autouse=True)
def restless_spares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spares overwritten at once (no rest, their exchanges taken as durable): versions
    follow each other within microseconds, in the same two inodes, at one size."""
    monkeypatch.setattr(atomic, "SPARE_REST_S", 0.0)
    monkeypatch.setattr(durable, "synced_at", lambda directory: float("inf"))


def test_the_same_file_is_read_once_and_every_new_version_again(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    cache, load = SnapshotCache(1 << 20), Counting(path)
    assert cache.get(str(path), load) == (None, 0) and load.loads == 1
    assert cache.get(str(path), load) == (None, 0) and load.loads == 2  # nothing is kept
    atomic.write_atomic(path, doc(1), spare=True)
    assert cache.get(str(path), load) == (doc(1), len(doc(1)))
    assert cache.get(str(path), load)[0] == doc(1) and load.loads == 3
    inodes = set()
    for version in range(2, 9):  # temp files renamed in, then spares exchanged in
        atomic.write_atomic(path, doc(version), spare=True)
        inodes.add(os.stat(path).st_ino)
        assert cache.get(str(path), load)[0] == doc(version)
        assert cache.get(str(path), load)[0] == doc(version)
        assert load.loads == 3 + version - 1
    assert len(inodes) == 2  # the same two inodes took turns, at one size
    path.unlink()
    assert cache.get(str(path), load) == (None, 0) and cache.size == 0


def test_a_file_without_a_version_in_its_tail_is_read_every_time(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'{\n  "version": 3,\n  "text": "%s"\n}' % (b"y" * 5000))
    cache, load = SnapshotCache(1 << 20), Counting(path)
    cache.get(str(path), load)
    cache.get(str(path), load)
    assert load.loads == 2 and cache.size == 0


def test_the_copies_stay_under_the_limit(tmp_path: Path) -> None:
    """The limit counts each copy's bytes and what keeping it costs (ENTRY_BYTES): many
    small documents cannot hold more memory than it says."""
    one = len(doc(1, "a" * 8)) + ENTRY_BYTES
    cache = SnapshotCache(4 * one)
    loads = {}
    for name in "abcdef":
        path = tmp_path / f"{name}.json"
        path.write_bytes(doc(1, name * 8))
        loads[name] = Counting(path)
        cache.get(str(path), loads[name])
    assert cache.size == 4 * one  # four kept, each counted with its cost
    cache.get(str(tmp_path / "f.json"), loads["f"])  # the newest stays
    assert loads["f"].loads == 1
    cache.get(str(tmp_path / "a.json"), loads["a"])  # the oldest went
    assert loads["a"].loads == 2
    big = tmp_path / "big.json"
    big.write_bytes(doc(1, "z" * one))  # more than a quarter of the limit: not kept
    count = Counting(big)
    cache.get(str(big), count)
    cache.get(str(big), count)
    assert count.loads == 2
