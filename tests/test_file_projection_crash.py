"""The file projector killed with SIGKILL mid-batch, again and again, while writers
keep appending: once it has caught up, every snapshot equals the fold of the
log (nothing lost, nothing applied twice). SIGTERM finishes the batch and exits.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventlog import Writer
from eventlog.notify import PROGRESS, Bell
from eventlog.settings import Settings
from projections.checkpoint import read_checkpoint
from projections.file_health import progress
from projections.file_projector import parked
from projections.snapshots import read_snapshot
from tests.test_file_projection import assert_matches_fold, catch_up, log_events, upsert

ROOT = Path(__file__).resolve().parent.parent
CRASHER = Path(__file__).parent / "procs" / "file_projector_crash.py"
ACCOUNTS = [str(76561199027634480 + 104729 * i) for i in range(12)]
FRIEND = "76561198123456789"


class Appender:
    """A writer thread appending mixed events until stopped."""

    def __init__(self, s: Settings, seed: int) -> None:
        self.writer = Writer(s)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.first = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        rng, w = self.rng, self.writer
        while not self.stop.is_set():
            futures = []
            for _ in range(rng.randint(1, 8)):
                account = rng.choice(ACCOUNTS)
                roll = rng.random()
                if roll < 0.6:
                    extra = {"updated_at": "2025-01-01T00:00:00Z"} if rng.random() < 0.5 else {}
                    data = upsert(
                        str(rng.randrange(6)), state=rng.choice(["Active", "Accepted"]), **extra
                    )
                    cmd = w.command(account, "TradeOfferUpserted", data)
                elif roll < 0.9:
                    record = {"state": "awaiting_reply", "followUpCount": rng.randrange(9)}
                    data = {"friend_steam_id": FRIEND, "negotiation": record}
                    cmd = w.command(account, "FriendNegotiationUpserted", data)
                else:
                    cmd = w.command(account, "FriendsRemoved", {"friend_steam_ids": [FRIEND]})
                futures.append(w.submit(cmd))
            for f in futures:
                f.result()
            self.count += len(futures)
            self.first.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.writer.close()


def cli(s: Settings, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "tools.cli", "project", "file", *args,
        "--data-dir", str(s.data_dir), "--partitions", str(s.partitions), "--redis-url", "",
    ]  # fmt: skip


def wait_rings(bell: Bell, count: int, deadline: float) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"only {len(got)} of {count} progress rings before the deadline")
        got += [orjson.loads(m) for m in bell.wait(left)]
    return got


def ahead_of_checkpoint(s: Settings) -> int:
    """How many snapshots hold events their checkpoint does not cover yet (a mid-batch kill)."""
    positions = read_checkpoint(s).positions
    covered: dict[str, int] = {}
    for event in log_events(s):
        if event.offset < positions.get(event.partition, 0):
            covered[event.account] = event.version
    held = {a: read_snapshot(s, a) for a in ACCOUNTS}
    return sum(1 for a, f in held.items() if f is not None and f.doc["version"] > covered.get(a, 0))


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_mid_batch_twenty_times_loses_and_doubles_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    rng = random.Random(20)
    appender = Appender(s, seed=21)
    bell = Bell(s.run_dir, PROGRESS)
    kinds = []
    ahead = 0
    try:
        assert appender.first.wait(30)
        for i in range(20):
            bell.drain()
            if i % 2 == 0:
                # Dies by its own hand at a chosen rename: between snapshots, before the
                # checkpoint, or just after it.
                kill_at = rng.randint(1, 60)
                args = [str(CRASHER), str(s.data_dir), str(s.partitions), str(kill_at)]
                proc = subprocess.Popen(
                    [sys.executable, *args, str(rng.randint(3, 40))], cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
            else:
                # The real command, killed from outside as soon as it has finished 1-3
                # batches: it is then mid-way through the next one.
                proc = subprocess.Popen(
                    cli(s, "--batch", str(rng.randint(3, 40))), cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
                wait_rings(bell, rng.randint(1, 3), time.monotonic() + 60)
                proc.send_signal(signal.SIGKILL)
            kinds.append(finish(proc))
            ahead += ahead_of_checkpoint(s)
        assert kinds == [-signal.SIGKILL] * 20
        assert ahead > 0  # some kills did land between a batch's snapshots and its checkpoint
        assert appender.count > 0
    finally:
        bell.close()
        appender.close()
    final = catch_up(s, batch=50)
    assert final.parked_events == 0 and parked(s) == []
    assert_matches_fold(s)
    assert progress(s)["lag_total"] == 0
    assert not [n for n in os.listdir(s.snapshot_dir) if n.endswith(".tmp")]


def test_sigterm_finishes_the_batch_and_exits_cleanly(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    with Writer(s) as writer:
        for i in range(1500):
            writer.submit(
                writer.command(ACCOUNTS[i % 12], "TradeOfferUpserted", upsert(str(i % 50)))
            )
        writer.append(ACCOUNTS[0], "TradeOfferUpserted", upsert("1", state="Accepted"))
    bell = Bell(s.run_dir, PROGRESS)
    proc = subprocess.Popen(cli(s, "--batch", "40"), cwd=ROOT, stdout=subprocess.PIPE)
    try:
        [ring] = wait_rings(bell, 1, time.monotonic() + 60)[:1]
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode == 0
    finally:
        bell.close()
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    assert out.startswith("project file: ") and "applied" in out
    # What it checkpointed is exactly what it applied: the rest comes on the next run.
    stopped = read_checkpoint(s).positions
    rung: dict[str, int] = ring["positions"]  # type: ignore[assignment]
    assert sum(stopped.values()) >= sum(rung.values())
    rest = catch_up(s)
    assert rest.skipped == 0 and rest.applied == len(log_events(s)) - sum(stopped.values())
    assert_matches_fold(s)


def test_project_until_caught_up_exits_with_a_summary(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    with Writer(s) as writer:
        for i in range(30):
            writer.append(ACCOUNTS[i % 3], "TradeOfferUpserted", upsert(str(i)))
    done = subprocess.run(cli(s, "--until-caught-up"), cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("project file: 30 events")
    assert "applied 30" in done.stdout.decode()
    assert_matches_fold(s)
    again = subprocess.run(cli(s, "--until-caught-up"), cwd=ROOT, capture_output=True, timeout=60)
    assert again.stdout.decode().startswith("project file: 0 events")
    bad = subprocess.run(cli(s, "--batch", "0"), cwd=ROOT, capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"--batch" in bad.stderr


def test_a_burst_of_stop_signals_stops_the_daemon_cleanly(
    make_settings: Callable[..., Settings],
) -> None:
    """One Ctrl-C under `tradelog up` brings several signals at once (the terminal's
    SIGINT, the supervisor's SIGTERM): a signal landing while the handler of the one
    before sets the stop must not wait on it forever."""
    s = make_settings()
    with Writer(s) as writer:
        writer.append(ACCOUNTS[0], "TradeOfferUpserted", upsert("1"))
    bell = Bell(s.run_dir, PROGRESS)
    proc = subprocess.Popen(cli(s), cwd=ROOT, stdout=subprocess.PIPE)
    try:
        wait_rings(bell, 1, time.monotonic() + 60)  # its handlers are installed
        for i in range(3000):
            with contextlib.suppress(ProcessLookupError):  # (it may be gone already)
                os.kill(proc.pid, signal.SIGTERM if i % 2 else signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode()  # (it hung: TimeoutExpired)
        # A signal of the burst that lands once the interpreter is finalizing (its
        # handlers back to the defaults) ends it by that signal: it had stopped already.
        assert proc.returncode in (0, -signal.SIGTERM, -signal.SIGINT)
    finally:
        bell.close()
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    assert out.startswith("project file: ")  # it finished its batch and said so
