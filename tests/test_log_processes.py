"""The log under several processes: concurrent writers, and writers killed with SIGKILL.

Guarantees 2 and 3: eight processes appending to one account get versions
1..N and offsets 0..N-1 each exactly once, with the file log and the stream
holding the same events in the same order; a writer killed at random points
never loses an acknowledged event and never leaves a torn line behind once
the next writer (or a reader under the lock) has caught up.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis

from eventlog.filelog import PartitionFile
from eventlog.keys import Keys
from eventlog.records import StoredEvent, partition_of
from eventlog.relay import Relay
from eventlog.segments import Cursor, partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from eventlog.writer import Writer

PROCS = Path(__file__).parent / "procs"
ACCOUNT = "76561199027634480"


class Lines:
    """Reads a child's stdout line by line, each read bounded by a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.eof = False

    def next(self, deadline: float) -> bytes | None:
        """The next complete line (without newline); None at end of output."""
        while b"\n" not in self.buf:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete line from the child before the deadline")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 1 << 16)
                if chunk:
                    self.buf += chunk
                else:
                    self.eof = True
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def rest(self, deadline: float) -> list[bytes]:
        """Every complete line until end of output (a partial last line is dropped)."""
        out: list[bytes] = []
        while (line := self.next(deadline)) is not None:
            out.append(line)
        return out


def read_file_log(settings: Settings, partition: int) -> list[StoredEvent]:
    cursor = Cursor(partition_dir(settings.log_dir, partition), partition)
    try:
        events, _ = cursor.read()
        return events
    finally:
        cursor.close()


def read_stream(stream: StreamLog, partition: int) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    while True:
        page = stream.read(partition, len(out), count=1000)
        if not page:
            return out
        out.extend(page)


def test_eight_processes_append_to_one_account(
    redis_url: str, redis_client: redis.Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(redis_url=redis_url)
    n_procs, each = 8, 500
    total = n_procs * each
    partition = partition_of(ACCOUNT, settings.partitions)
    deadline = time.monotonic() + 60
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(PROCS / "append_many.py"),
                str(settings.data_dir),
                redis_url,
                str(settings.partitions),
                ACCOUNT,
                str(each),
                str(seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for seed in range(n_procs)
    ]
    try:
        readers = [Lines(p) for p in procs]
        for r in readers:
            assert r.next(deadline) == b"ready"
        for p in procs:  # every writer is open: start them together
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.close()
        acks = [orjson.loads(line) for r in readers for line in r.rest(deadline)]
        for p in procs:
            assert p.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, (
                p.stderr.read() if p.stderr else b""
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for pipe in (p.stdin, p.stdout, p.stderr):
                if pipe is not None:
                    pipe.close()

    # Every acknowledged append got its own version and offset.
    assert len(acks) == total
    assert sorted(a["version"] for a in acks) == list(range(1, total + 1))
    assert sorted(a["offset"] for a in acks) == list(range(total))
    assert len({a["id"] for a in acks}) == total

    # The file log: offsets 0..N-1 without a gap, versions 1..N in log order.
    events = read_file_log(settings, partition)
    assert [e.offset for e in events] == list(range(total))
    assert [e.version for e in events] == list(range(1, total + 1))
    assert {e.account for e in events} == {ACCOUNT}
    by_offset = {e.offset: e for e in events}
    for a in acks:
        logged = by_offset[a["offset"]]
        assert (logged.id, logged.version) == (a["id"], a["version"])
    for other in range(settings.partitions):
        if other != partition:
            assert read_file_log(settings, other) == []

    # The stream: the same ids in the same order, entry k at ID 0-(k+1).
    stream = StreamLog(redis_client, Keys(settings.key_prefix))
    if not all(a["redis_written"] for a in acks):
        Relay(settings, stream).level(partition)
    streamed = read_stream(stream, partition)
    assert [(e.offset, e.id) for e in streamed] == [(e.offset, e.id) for e in events]
    assert [e.to_dict() for e in streamed] == [e.to_dict() for e in events]
    raw = cast(
        list[tuple[bytes, Any]], redis_client.xrange(Keys(settings.key_prefix).log(partition))
    )
    entry_ids = [eid for eid, _ in raw]
    assert entry_ids == [f"0-{k + 1}".encode() for k in range(total)]


def _check_partition_after_crash(
    settings: Settings, partition: int
) -> tuple[list[StoredEvent], bool]:
    """Catch up under the lock like a new writer; return the events and whether a tail was cut."""
    pdir = partition_dir(settings.log_dir, partition)
    bases = segment_bases(pdir)
    torn = bool(bases) and not segment_path(pdir, bases[-1]).read_bytes().endswith(b"\n")
    pf = PartitionFile(settings.log_dir, partition, settings.segment_bytes)
    try:
        with pf.locked():
            events = pf.catch_up()
    finally:
        pf.close()
    # After catch-up no torn line remains: every segment ends with a newline and every
    # line parses as an event, numbered without a gap across segments.
    expected = 0
    for base in segment_bases(pdir):
        assert base == expected, f"segment {base} does not follow offset {expected - 1}"
        raw = segment_path(pdir, base).read_bytes()
        assert raw == b"" or raw.endswith(b"\n"), f"segment {base} ends in a partial line"
        for line in raw.splitlines():
            event = StoredEvent.from_line(line)
            assert (event.partition, event.offset) == (partition, expected)
            expected += 1
    assert [e.offset for e in events] == list(range(expected))
    return events, torn


@pytest.mark.slow
def test_sigkill_loop_loses_no_acknowledged_event(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(fsync="always", segment_bytes=1 << 20)
    accounts = ["76561199027634480", "76561199027642399", "76561199027650318"]
    rng = random.Random(20261125)
    acked: dict[str, tuple[int, int, str, int]] = {}
    torn_rounds = 0
    stderr_path = tmp_path / "append_loop.stderr"
    for _ in range(20):
        threads = rng.choice([1, 3])
        payload = rng.choice([50, 5_000, 120_000, 1_500_000])
        want = rng.randint(1, 25)
        deadline = time.monotonic() + 20
        with (
            stderr_path.open("ab") as err,
            subprocess.Popen(
                [
                    sys.executable,
                    str(PROCS / "append_loop.py"),
                    str(settings.data_dir),
                    str(settings.partitions),
                    str(threads),
                    str(payload),
                    *accounts,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            ) as proc,
        ):
            lines = Lines(proc)
            got: list[bytes] = []
            try:
                while len(got) < want:
                    line = lines.next(deadline)
                    assert line is not None, stderr_path.read_text()
                    got.append(line)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            got.extend(lines.rest(deadline))  # acks printed before the kill landed
        assert proc.returncode == -signal.SIGKILL
        for line in got:
            event_id, in_part, offset, account, version = line.decode().split()
            acked[event_id] = (int(in_part), int(offset), account, int(version))

        # Reopen like the next writer: nothing acknowledged is missing, nothing is torn.
        logged: dict[str, StoredEvent] = {}
        versions: dict[str, list[int]] = defaultdict(list)
        for part in range(settings.partitions):
            events, torn = _check_partition_after_crash(settings, part)
            torn_rounds += torn
            for e in events:
                logged[e.id] = e
                versions[e.account].append(e.version)
        missing = set(acked) - set(logged)
        assert not missing, f"acknowledged events lost: {sorted(missing)[:5]}"
        for event_id, position in acked.items():
            e = logged[event_id]
            assert (e.partition, e.offset, e.account, e.version) == position
        for account, seen in versions.items():
            assert seen == list(range(1, len(seen) + 1)), f"version gap on {account}"

    assert len(acked) >= 20
    # A new writer continues every partition right after its last line.
    with Writer(settings) as writer:
        for account in accounts:
            before = read_file_log(settings, partition_of(account, settings.partitions))
            r = writer.append(
                account,
                "FriendNegotiationUpserted",
                {"friend_steam_id": "76561198000000001", "negotiation": {"state": "done"}},
            )
            assert r.offset == len(before)
            mine = [e.version for e in before if e.account == account]
            assert r.version == len(mine) + 1
    print(f"rounds that left a torn tail: {torn_rounds}")
