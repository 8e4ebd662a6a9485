"""Shared helpers of the API tests (tests/test_api_*.py): the app under Starlette's
TestClient with its projectors running in threads, a real `tradelog serve` with a
`tradelog project file` beside it, and the checks every test repeats.

Nothing here sleeps to synchronise: the projector threads are stopped with an
event and joined, the real server is waited for by polling `/health` and
`/ready` against a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from starlette.testclient import TestClient

from api.app import create_app
from api.status import log_ends
from eventlog.notify import APPENDED, Ringer
from eventlog.settings import Settings
from projections.daemon import Projector, run
from tests.conftest import SAMPLES_DIR

__all__ = [
    "ACCOUNT",
    "FRIEND",
    "FRIEND2",
    "HEADERS",
    "KEY",
    "KEY2",
    "SAMPLES",
    "WAIT_MS",
    "ProjectorThread",
    "Server",
    "account_id",
    "assert_error",
    "free_port",
    "log_length",
    "serving",
]

# The read-your-writes bound of the tests: writes that are projected answer at once
# (milliseconds); the bound only matters when the machine stalls (fsyncs of a loaded
# disk took over a second here), where the 2 s default would turn a stall into a
# failure. A missed progress ring would still show: such a write takes this long.
WAIT_MS = 10_000
KEY = "test-key-one"
KEY2 = "test-key-two"
HEADERS = {"X-API-Key": KEY}
ACCOUNT = "76561199027634480"
FRIEND = "76561198123456789"
FRIEND2 = "76561198123456790"
SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
TRADELOG = Path(sys.executable).parent / "tradelog"
REPO = Path(__file__).resolve().parents[2]


def account_id(i: int) -> str:
    """The i-th test account: valid SteamID64s spread over the partitions."""
    return str(76561199027634480 + 7919 * i)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_length(settings: Settings) -> int:
    """Events in the file log, all partitions: what a rejected write must leave alone."""
    return sum(log_ends(settings).values())


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The legacy error shape: `success` false, `error` a readable string, a `code`."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    body: dict[str, Any] = resp.json()
    assert body["success"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["code"], str) and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    return body


class ProjectorThread:
    """A projector daemon (`daemon.run`, not burst mode) in a thread of this process."""

    def __init__(self, projector: Projector, settings: Settings) -> None:
        self.projector = projector
        self.settings = settings
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"api-test-{projector.name}-projector", daemon=True
        )

    def _run(self) -> None:
        try:
            run(self.projector, self.stop_event, idle_s=0.1)
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def start(self) -> ProjectorThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        ringer = Ringer(self.settings.run_dir, APPENDED)
        ringer.ring()  # wake a file projector idling on its bell
        ringer.close()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"{self.projector.name} projector did not stop"
        if self.error is not None:
            raise self.error


def _projector(kind: str, settings: Settings) -> Projector:
    if kind == "file":
        from projections.file_projector import FileProjector

        return FileProjector(settings)
    from projections.redis_projector import RedisProjector

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    return RedisProjector(settings, client, "api-test", lease_ms=0, freeze_gc=False)


@contextlib.contextmanager
def serving(settings: Settings, projectors: tuple[str, ...] = ("file",)) -> Iterator[TestClient]:
    """The app under TestClient (lifespan run), with `projectors` running for the duration."""
    threads = [ProjectorThread(_projector(kind, settings), settings) for kind in projectors]
    try:
        with TestClient(create_app(settings)) as client:
            for t in threads:
                t.start()
            yield client
    finally:
        errors: list[BaseException] = []
        for t in threads:
            try:
                if t.thread.ident is not None:  # started
                    t.stop()
                else:
                    t.projector.close()
            except BaseException as e:
                errors.append(e)
            own = getattr(t.projector, "client", None)  # the Redis projector's client
            if own is not None:
                own.close()
        if errors:
            raise errors[0]


def _wait_for(
    what: str, check: Any, deadline_s: float, procs: list[subprocess.Popen[bytes]]
) -> Any:
    """Poll `check()` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: {p.args!r} exited with {p.returncode}")
        try:
            last = check()
        except httpx.TransportError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.05)  # the poll interval of a deadline wait, not a synchronisation
    raise AssertionError(f"{what}: not reached in {deadline_s} s (last: {last!r})")


@dataclass
class Server:
    """`tradelog serve` and `tradelog project file` as real processes on one data dir."""

    data_dir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOG_")}
        env.update(
            {
                "TRADELOG_DATA_DIR": str(self.data_dir),
                "TRADELOG_REDIS_URL": "",
                "TRADELOG_PARTITIONS": "4",
                "TRADELOG_API_KEYS": f"{KEY},{KEY2}",
                "TRADELOG_PROJECTION_WAIT_MS": str(WAIT_MS),
                "PYTHONPATH": str(REPO),
            }
        )
        env.update(self.env_extra)
        return env

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.data_dir.parent / f"{name}.log", "wb")  # noqa: SIM115 (kept by Popen)
        try:
            proc = subprocess.Popen(
                [str(TRADELOG), *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,
            )  # fmt: skip
        finally:
            log.close()
        self.procs.append(proc)

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn("serve", "serve", "--host", "127.0.0.1", "--port", str(self.port))
        self._spawn("project-file", "project", "file")
        with httpx.Client(base_url=self.url, timeout=5) as client:
            _wait_for(
                "GET /health", lambda: client.get("/health").status_code == 200, 30, self.procs
            )

            def file_projector_alive() -> bool:
                ready = client.get("/ready", headers=HEADERS).json()
                return bool(ready["projectors"]["file"]["heartbeat"])

            _wait_for("file projector heartbeat", file_projector_alive, 30, self.procs)
        return self

    def stop(self) -> list[int]:
        """SIGTERM both processes, wait, and return their exit statuses."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        codes = [p.returncode for p in self.procs]
        self.procs.clear()
        return codes

    def logs(self) -> str:
        out = []
        for name in ("serve", "project-file"):
            path = self.data_dir.parent / f"{name}.log"
            if path.exists():
                out.append(f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)
