"""Fixtures: a private redis-server per test (never the shared one), settings, writers."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pytest_redis.executor import RedisExecutor

from eventlog import Writer
from eventlog.settings import Settings, load_settings

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _samples_dir() -> Path:
    # shared/ lies beside the checkout, for a developer and for CI alike.
    for root in (Path(__file__).resolve().parents[2], Path("/work")):
        folder = root / "shared" / "samples" / "legacy-negotiations"
        if folder.is_dir():
            return folder
    raise RuntimeError("the legacy samples (shared/samples/legacy-negotiations) are missing")


SAMPLES_DIR = _samples_dir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisExecutor]:
    """A redis-server of the test's own on a free port; tests may stop and start it."""
    executor = RedisExecutor(
        executable=REDIS_SERVER,
        databases=4,
        redis_timeout=30,
        loglevel="warning",
        host="127.0.0.1",
        port=free_port(),
        datadir=tmp_path_factory.mktemp("redis"),
        save="",
        appendonly="no",
    )
    executor.start()
    yield executor
    executor.stop()


@pytest.fixture
def redis_url(redis_server: RedisExecutor) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/0"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("redis_url", "")
        overrides.setdefault("partitions", 4)
        return load_settings(**overrides)

    return make


@pytest.fixture
def rsettings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    """Settings for tests of the Redis side: the test's own redis-server, 4 partitions."""
    return make_settings(redis_url=redis_url, fsync="off", partitions=4, redis_timeout_ms=5000)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """File-only settings in the test's temp dir (modules needing others override it)."""
    return make_settings()


@pytest.fixture
def writer(settings: Settings) -> Iterator[Writer]:
    with Writer(settings) as w:
        yield w


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names files are put in place under, in order: renames and spare exchanges."""
    import os

    from projections import fscalls

    names: list[str] = []
    real_replace, real_exchange = os.replace, fscalls.exchange

    def replacing(src: Any, dst: Any) -> None:
        names.append(Path(dst).name)
        real_replace(src, dst)

    def exchanging(a: str, b: str) -> None:
        names.append(Path(b).name)
        real_exchange(a, b)

    monkeypatch.setattr(os, "replace", replacing)
    monkeypatch.setattr(fscalls, "exchange", exchanging)
    return names
