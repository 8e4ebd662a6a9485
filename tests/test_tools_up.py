"""`tradelog up` as an operator runs it: a real supervisor with its children, file-only
(no Redis), killed with SIGKILL. Nothing sleeps to synchronise: every wait polls a
condition against a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs.api_harness import HEADERS, KEY, TRADELOG, account_id, free_port


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has stopped running


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_up(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`tradelog up` in a session of its own (its children with it, for the clean-up)."""
    return subprocess.Popen(
        [str(TRADELOG), "up"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str]]]:
    port = free_port()
    env = {
        **os.environ,
        "TRADELOG_DATA_DIR": str(tmp_path / "data"),
        "TRADELOG_REDIS_URL": "",
        "TRADELOG_API_KEYS": KEY,
        "TRADELOG_PORT": str(port),
    }
    proc = _start_up(env)
    url = f"http://127.0.0.1:{port}"
    try:
        yield proc, url, env
    finally:
        # Whatever the test left running: the supervisor's session (its children with it).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_up_children_stop_when_the_supervisor_is_killed(
    up: tuple[subprocess.Popen[bytes], str, dict[str, str]],
) -> None:
    proc, url, env = up
    _wait("GET /health", lambda: _healthy(url), 30)
    _wait("both children", lambda: len(_children(proc.pid)) == 2, 30)
    children = _children(proc.pid)
    resp = httpx.post(
        f"{url}/negotiations/{account_id(1)}/atomic-upsert-trade-offer",
        json={"trade_offer_data": {"trade_offer_id": "1", "state": "Active"}},
        headers=HEADERS,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Orphans would keep the port and the file projector's lock, so the next `up`
    # could start neither, while they ran on unsupervised.
    _wait("the children to stop", lambda: not any(_alive(c) for c in children), 30)

    again = _start_up(env)
    try:
        _wait("GET /health of the next up", lambda: _healthy(url), 30)
        got = httpx.get(f"{url}/negotiations/{account_id(1)}", headers=HEADERS, timeout=30)
        assert got.json()["version"] == 1
        assert not any(_alive(c) for c in children)  # none came back meanwhile
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGKILL)
            again.wait()


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_port_in_use_is_said_at_once(tmp_path: Path, command: str) -> None:
    """Not "serving on" and then a worker's bind error (or, under `up`, its restarts for
    ever): the command stops before starting anything, naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "TRADELOG_DATA_DIR": str(tmp_path / "data"),
            "TRADELOG_REDIS_URL": "",
            "TRADELOG_API_KEYS": KEY,
            "TRADELOG_PORT": str(port),
        }
        done = subprocess.run([str(TRADELOG), command], env=env, capture_output=True, timeout=30)
    assert done.returncode == 2, done
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr.decode()
    assert b" on http://" not in done.stdout
    assert not (tmp_path / "data").exists()  # nothing made: no key, no log


def _workers_of(pid: int) -> list[int]:
    """The uvicorn workers `pid` started (multiprocessing children, not its tracker)."""
    found = []
    for child in _children(pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in argv and b"resource_tracker" not in argv:
                found.append(child)
    return found


def test_serve_killed_takes_its_workers_with_it(tmp_path: Path) -> None:
    """`serve --workers 2` killed -9: its uvicorn workers stop too. They went on
    serving its port with no supervisor, and `up` could not start another serve."""
    port = free_port()
    env = {
        **os.environ,
        "TRADELOG_DATA_DIR": str(tmp_path / "data"),
        "TRADELOG_REDIS_URL": "",
        "TRADELOG_API_KEYS": KEY,
    }
    argv = [str(TRADELOG), "serve", "--port", str(port), "--workers", "2"]
    serve = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait("serve to answer", lambda: _healthy(url), 60)
        _wait("two workers", lambda: len(_workers_of(serve.pid)) == 2, 60)
        workers = _workers_of(serve.pid)
        serve.kill()
        serve.wait()
        _wait("its workers to stop", lambda: not any(map(_alive, workers)), 30)
        assert not _healthy(url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGKILL)


def test_up_says_how_a_child_ended() -> None:
    from tools.cmd_up import _ended

    assert _ended(-signal.SIGKILL) == "was killed by SIGKILL"
    assert _ended(2) == "exited (2)"


def test_a_second_up_on_the_same_data_dir_is_refused(
    up: tuple[subprocess.Popen[bytes], str, dict[str, str]],
) -> None:
    """Its children would fight the first one's for the file projector's lock, and be
    restarted forever."""
    proc, url, env = up
    _wait("GET /health", lambda: _healthy(url), 30)
    second = subprocess.run(
        [str(TRADELOG), "up"], env={**env, "TRADELOG_PORT": str(free_port())},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 2
    assert "another `tradelog up` supervises" in second.stderr
    assert proc.poll() is None and _healthy(url)
