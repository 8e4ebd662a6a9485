"""`tradelog project redis` as operators run it: killed with SIGKILL and started again,
as one process or as a group of processes sharing the partitions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from eventlog import Writer
from eventlog.keys import Keys
from eventlog.settings import Settings
from projections.redis_slot import take_slot
from tests.test_redis_projection import assert_matches_fold, stream_events

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(40)]


@pytest.fixture
def rsettings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    return make_settings(redis_url=redis_url, fsync="off", partitions=4, redis_timeout_ms=5000)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cli(s: Settings, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "tools.cli", "project", "redis", *args,
        "--data-dir", str(s.data_dir), "--partitions", str(s.partitions),
        "--redis-url", s.redis_url,
    ]  # fmt: skip


def _env(s: Settings) -> dict[str, str]:
    return {**os.environ, "TRADELOG_KEY_PREFIX": s.key_prefix}


def _fill(s: Settings, count: int) -> None:
    with Writer(s) as writer:
        futures = []
        for n in range(count):
            offer = {"trade_offer_id": str(n % 17), "state": ("Active", "Accepted")[n % 2]}
            account = ACCOUNTS[n % len(ACCOUNTS)]
            cmd = writer.command(account, "TradeOfferUpserted", {"offer": offer})
            futures.append(writer.submit(cmd))
        for f in futures:
            f.result()


def _applied(client: redis.Redis, s: Settings) -> dict[int, int]:
    raw = client.hgetall(Keys(s.key_prefix).progress("redis"))
    return {int(k): int(v) for k, v in raw.items() if k.isdigit()}


def _wait(what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.01)  # polling a condition with a deadline


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _assert_caught_up(client: redis.Redis, s: Settings) -> None:
    events = stream_events(client, s)
    assert_matches_fold(client, s, events)
    keys = Keys(s.key_prefix)
    for p in range(s.partitions):
        assert client.xpending(keys.log(p), keys.group())["pending"] == 0
        assert _applied(client, s)[p] == 1 + max(e.offset for e in events if e.partition == p)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_a_projector_killed_and_started_again_goes_on_at_once(
    rsettings: Settings,
    redis_client: redis.Redis,
    procs: list[subprocess.Popen[bytes]],
    processes: int,
) -> None:
    _fill(rsettings, 4000)
    argv = _cli(rsettings, "--processes", str(processes), "--batch", "50")
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(rsettings), stderr=subprocess.DEVNULL)
    procs.append(proc)
    _wait("some events applied", lambda: sum(_applied(redis_client, rsettings).values()) > 200)
    shares = _children(proc.pid)
    assert len(shares) == (processes if processes > 1 else 0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # A group's processes stop with their parent, not to run on beside its successor.
    _wait("the shares gone", lambda: not any(_alive(pid) for pid in shares))
    assert sum(_applied(redis_client, rsettings).values()) < 4000
    # Before its leases ran out (10 s) and its entries idled (30 s): the same names.
    again = _cli(rsettings, "--processes", str(processes), "--until-caught-up")
    done = subprocess.run(again, cwd=ROOT, env=_env(rsettings), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    _assert_caught_up(redis_client, rsettings)


def test_a_slot_is_one_process_at_a_time(tmp_path: Path) -> None:
    first = take_slot(tmp_path, 0)
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from projections.redis_slot import take_slot; "
         "print(take_slot(Path(sys.argv[1]), 0).name)", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert first.name.endswith("-0")
    assert other.stdout.strip() != first.name  # a standby under a one-off name
    first.release()
    again = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from projections.redis_slot import take_slot; "
         "print(take_slot(Path(sys.argv[1]), 0).name)", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert again.stdout.strip() == first.name
