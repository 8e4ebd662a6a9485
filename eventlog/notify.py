"""Wake-ups between processes without polling: unix datagram "bells" in the data dir.

A listener binds a socket under `run/<channel>/`; a ringer sends a datagram to
every socket there (a stale one, whose process died, is removed). Writers ring
`appended` after each commit so the file projector tails at once; projectors
ring `progress` with their new positions so API workers can answer
read-your-writes without a busy loop. A missed ring only costs latency: every
listener also wakes on a time-out and re-reads the durable state.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import uuid
import weakref
from collections.abc import Iterable
from pathlib import Path

__all__ = ["Bell", "Ringer", "partitions_payload", "rung_partitions"]

APPENDED = "appended"
PROGRESS = "progress"
# Longer than any filesystem's timestamp step (a kernel tick; 1 s on some): see Ringer.
_RECENT_NS = 2_000_000_000


class Bell:
    """The listening end: a socket of this process under `run_dir/channel/`."""

    def __init__(self, run_dir: Path, channel: str) -> None:
        self.dir = run_dir / channel
        self.dir.mkdir(parents=True, exist_ok=True)
        # Unix socket paths are limited to ~107 bytes: keep the name short.
        self.path = self.dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> list[bytes]:
        """Every datagram waiting, oldest first (empty when none)."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except (BlockingIOError, InterruptedError):
                return out

    def wait(self, timeout: float) -> list[bytes]:
        """Block until a ring or the time-out; return what was rung."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return self.drain() if ready else []

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def partitions_payload(partitions: Iterable[int]) -> bytes:
    """An `appended` ring naming the partitions written (`b"p3,5"`)."""
    return b"p" + ",".join(map(str, partitions)).encode()


def rung_partitions(payloads: Iterable[bytes]) -> set[int] | None:
    """The partitions `appended` rings named; None if one named none (a plain ring, as
    a release before named none): then every partition may have new lines."""
    rung: set[int] = set()
    for payload in payloads:
        try:
            if not payload.startswith(b"p"):
                return None
            rung.update(map(int, payload[1:].split(b",")))
        except ValueError:
            return None
    return rung


class Ringer:
    """The ringing end for one channel, kept by a process that rings often (the writer, each
    projector).

    Keeps one socket and the listing of listeners, re-read only when the
    channel's directory changes (a listener came or went) or changed a moment
    ago, so a ring costs a stat and one sendto per listener.
    """

    def __init__(self, run_dir: Path, channel: str) -> None:
        self.dir = run_dir / channel
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        # Closed by close(), or when the Ringer is dropped without it (a projector a test
        # abandons to play a crash): a socket that only sends holds nothing to flush.
        self._closer = weakref.finalize(self, self.sock.close)
        self._mtime = -1
        self._paths: list[str] = []

    def _listeners(self) -> list[str]:
        # A wake-up is best effort: a run dir removed meanwhile means nobody listens.
        try:
            mtime = os.stat(self.dir).st_mtime_ns
            # A listener that binds in the same timestamp step as the last listing leaves
            # the mtime as it was (it would never be rung): while the mtime is that
            # recent, the directory is listed again at every ring.
            if mtime != self._mtime or time.time_ns() - mtime < _RECENT_NS:
                self._paths = [str(self.dir / n) for n in os.listdir(self.dir)]
                self._mtime = mtime
        except FileNotFoundError:
            return []
        return self._paths

    def ring(self, payload: bytes = b"1") -> int:
        sent = 0
        for path in self._listeners():
            try:
                self.sock.sendto(payload, path)
                sent += 1
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # its process is gone; the dir's mtime changes
            except OSError:
                pass  # a full queue: the listener is awake and will re-read anyway
        return sent

    def close(self) -> None:
        self._closer()
