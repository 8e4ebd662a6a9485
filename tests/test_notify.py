"""The bells: a Ringer reaches every listener of its channel, late ones included."""

from __future__ import annotations

import os
from pathlib import Path

from eventlog.notify import PROGRESS, Bell, Ringer


def test_a_listener_bound_in_the_same_timestamp_step_is_rung(tmp_path: Path) -> None:
    """A directory's mtime moves in steps (a kernel tick; a second on some filesystems):
    a listener that binds within the step of the Ringer's last listing leaves it as it
    was, and must be rung all the same (an API worker started beside a busy projector)."""
    first = Bell(tmp_path, PROGRESS)
    ringer = Ringer(tmp_path, PROGRESS)
    late: Bell | None = None
    try:
        assert ringer.ring(b"a") == 1
        listed = os.stat(first.dir).st_mtime_ns
        late = Bell(tmp_path, PROGRESS)
        now = os.stat(first.dir)
        os.utime(first.dir, ns=(now.st_atime_ns, listed))  # as a coarse clock leaves it
        assert ringer.ring(b"b") == 2
        assert late.drain() == [b"b"]
        assert first.drain() == [b"a", b"b"]
    finally:
        ringer.close()
        first.close()
        if late is not None:
            late.close()


def test_a_gone_listener_is_forgotten(tmp_path: Path) -> None:
    bell = Bell(tmp_path, PROGRESS)
    gone = Bell(tmp_path, PROGRESS)
    gone.sock.close()  # its process died: the socket file stays, nobody reads it
    ringer = Ringer(tmp_path, PROGRESS)
    try:
        assert ringer.ring(b"x") == 1
        assert not gone.path.exists()
        assert bell.drain() == [b"x"]
    finally:
        ringer.close()
        bell.close()
