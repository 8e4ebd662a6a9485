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
from projections.redis_scripts import LEASE, Call, Scripts
from projections.redis_slot import adopt, slot_name, take_slot
from tests.test_redis_projection import assert_matches_fold, stream_events
from tools.cmd_serve import child_env

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = [str(76561199027634480 + 7919 * i) for i in range(40)]


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
    return child_env(s)


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


def _start(s: Settings, processes: int) -> subprocess.Popen[bytes]:
    argv = _cli(s, "--processes", str(processes), "--batch", "50")
    return subprocess.Popen(argv, cwd=ROOT, env=_env(s), stderr=subprocess.DEVNULL)


def _shares(proc: subprocess.Popen[bytes], count: int) -> list[int]:
    found: list[int] = []

    def started() -> bool:
        found[:] = _children(proc.pid)
        return len(found) == count

    _wait(f"{count} shares started", started)
    return found


def _kill_all(proc: subprocess.Popen[bytes], shares: list[int]) -> None:
    """SIGKILL to the parent and its shares at once (an OOM kill of the group, say):
    nobody hands its leases or entries back."""
    for pid in [proc.pid, *shares]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    _wait("the shares gone", lambda: not any(_alive(pid) for pid in shares))


def _catch_up(s: Settings, processes: int) -> None:
    again = _cli(s, "--processes", str(processes), "--until-caught-up")
    done = subprocess.run(again, cwd=ROOT, env=_env(s), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), [(1, 1), (2, 2), (2, 1), (1, 2)])
def test_a_projector_killed_and_started_again_goes_on_at_once(
    rsettings: Settings,
    redis_client: redis.Redis,
    procs: list[subprocess.Popen[bytes]],
    before: int,
    after: int,
) -> None:
    _fill(rsettings, 8000)
    proc = _start(rsettings, before)
    procs.append(proc)
    shares = _shares(proc, before) if before > 1 else []
    _wait("some events applied", lambda: sum(_applied(redis_client, rsettings).values()) > 200)
    _kill_all(proc, shares)
    assert sum(_applied(redis_client, rsettings).values()) < 8000
    # Well before the dead consumers' leases run out (10 s) or their entries idle (30 s):
    # the same names take them back, or under another process count their new owners do.
    _catch_up(rsettings, after)
    _assert_caught_up(redis_client, rsettings)


def test_a_lease_of_a_slot_killed_before_it_read_is_taken_over(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    """Share 1 of 2 took its partitions' leases and was killed before its first read
    (so no group lists it as a consumer); one process then catches up on every one."""
    _fill(rsettings, 800)
    keys = Keys(rsettings.key_prefix)
    scripts = Scripts(redis_client)
    slot = take_slot(rsettings.run_dir, 1)  # its slot: held, then let go as a kill does
    for p in (1, 3):  # what share 1 of 2 does first: its groups, leases, a first claim
        stream, group = keys.log(p), keys.group()
        redis_client.xgroup_create(stream, group, id="0", mkstream=True)
        assert scripts.run([Call(LEASE, [keys.lease(p)], [slot.name, 10_000])]) == [2]
        redis_client.xautoclaim(stream, group, slot.name, 30_000, "0-0", count=1000)
        assert redis_client.xinfo_consumers(stream, group) == []  # (claiming nothing)
    os.close(slot.fd)
    _catch_up(rsettings, 1)
    _assert_caught_up(redis_client, rsettings)


def test_a_lease_of_a_live_slot_or_a_one_off_name_is_kept(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rsettings.key_prefix)
    scripts = Scripts(redis_client)
    live = take_slot(rsettings.run_dir, 1)  # held by a live process (this one)
    try:
        holders = {1: live.name, 3: f"{slot_name(0)[:-2]}-pid4242"}
        for p, name in holders.items():
            assert scripts.run([Call(LEASE, [keys.lease(p)], [name, 10_000])]) == [2]
        adopt(redis_client, keys, rsettings.run_dir, {1: slot_name(0), 3: slot_name(0)})
        for p, name in holders.items():
            assert redis_client.get(keys.lease(p)) == name.encode()
    finally:
        os.close(live.fd)


def test_a_run_until_caught_up_names_the_partitions_another_consumer_holds(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    _fill(rsettings, 200)
    keys = Keys(rsettings.key_prefix)
    scripts = Scripts(redis_client)  # a live consumer of another host, for a minute
    assert scripts.run([Call(LEASE, [keys.lease(1)], ["elsewhere-0", 60_000])]) == [2]
    again = _cli(rsettings, "--processes", "1", "--until-caught-up")
    done = subprocess.run(again, cwd=ROOT, env=_env(rsettings), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert "partitions 1 held by another consumer: not applied here" in done.stdout.decode()
    assert redis_client.get(keys.lease(1)) == b"elsewhere-0"  # not taken over


@pytest.mark.slow
def test_the_group_stops_with_its_parent(
    rsettings: Settings, redis_client: redis.Redis, procs: list[subprocess.Popen[bytes]]
) -> None:
    _fill(rsettings, 8000)
    proc = _start(rsettings, 2)
    procs.append(proc)
    shares = _shares(proc, 2)
    _wait("some events applied", lambda: sum(_applied(redis_client, rsettings).values()) > 200)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The kernel tells the shares (SIGTERM): they finish their batch and hand back.
    _wait("the shares gone", lambda: not any(_alive(pid) for pid in shares))
    keys = Keys(rsettings.key_prefix)
    assert all(redis_client.get(keys.lease(p)) is None for p in range(rsettings.partitions))


@pytest.mark.slow
def test_a_share_that_dies_takes_the_group_down_for_a_restart(
    rsettings: Settings, redis_client: redis.Redis, procs: list[subprocess.Popen[bytes]]
) -> None:
    _fill(rsettings, 200)
    proc = _start(rsettings, 2)
    procs.append(proc)
    first, second = _shares(proc, 2)
    os.kill(second, signal.SIGKILL)
    assert proc.wait(timeout=60) == 128 + signal.SIGKILL
    _wait("the other share gone", lambda: not _alive(first))


@pytest.mark.slow
def test_sigterm_stops_the_group_cleanly(
    rsettings: Settings, redis_client: redis.Redis, procs: list[subprocess.Popen[bytes]]
) -> None:
    _fill(rsettings, 200)
    proc = _start(rsettings, 2)
    procs.append(proc)
    shares = _shares(proc, 2)
    _wait("caught up", lambda: sum(_applied(redis_client, rsettings).values()) == 200)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in shares)


def _other_process_slot(run_dir: Path) -> str:
    code = (
        "import sys; from pathlib import Path; from projections.redis_slot import take_slot; "
        "print(take_slot(Path(sys.argv[1]), 0, wait_s=0).name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_slot_is_one_process_at_a_time(tmp_path: Path) -> None:
    first = take_slot(tmp_path, 0)
    assert first.name.endswith("-0") and first.fd >= 0
    assert _other_process_slot(tmp_path) != first.name  # a standby under a one-off name
    os.close(first.fd)  # as at the holder's exit, however it ends
    assert _other_process_slot(tmp_path) == first.name
