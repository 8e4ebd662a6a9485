"""The generated API key: made once (mode 0600) when none is configured, kept after;
an empty key file (a crash between its creation and its write) is never taken as the
empty key, which would let every request in."""

from __future__ import annotations

import multiprocessing
import stat
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.keys import KEY_FILE, load_keys
from eventlog._exceptions import SettingsError
from eventlog.settings import Settings, load_settings


def test_a_key_is_made_once_and_kept(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys=None)
    assert load_keys(settings) == ((), False)  # none made without asking
    (key,), created = load_keys(settings, create=True)
    assert created and len(key) >= 32
    path = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(settings, create=True) == ((key,), False)
    assert not [p.name for p in settings.data_dir.iterdir() if p.name.endswith(".tmp")]


def test_an_empty_key_file_is_never_the_key(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys=None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / KEY_FILE
    path.write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):  # a worker: refuse to serve
        load_keys(settings)
    with pytest.raises(SettingsError), TestClient(create_app(settings)):
        pass
    (key,), created = load_keys(settings, create=True)  # `up` or `serve`: a new key
    assert created and key and path.read_text().strip() == key


def test_a_key_file_that_cannot_be_read_is_named(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys=None)
    (settings.data_dir / KEY_FILE).mkdir(parents=True)
    with pytest.raises(SettingsError, match=KEY_FILE):
        load_keys(settings, create=True)


def _make_key(data_dir: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    out.put(load_keys(load_settings(data_dir=data_dir, redis_url="", api_keys=None), True))


@pytest.mark.parametrize("file", ["none", "empty"])
def test_processes_making_the_key_at_once_agree_on_one(
    make_settings: Callable[..., Settings], file: str
) -> None:
    """`up` and a `serve` starting together on a data dir with no key (or an empty key
    file, a crash's): one makes it, the other takes it; the key printed is the key."""
    ctx = multiprocessing.get_context("fork")
    for trial in range(8):
        settings = make_settings(api_keys=None, data_dir=make_settings().data_dir / str(trial))
        settings.data_dir.mkdir(parents=True)
        if file == "empty":
            (settings.data_dir / KEY_FILE).write_text("")
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_make_key, args=(str(settings.data_dir), barrier, out))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        got = [out.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(30)
        held = (settings.data_dir / KEY_FILE).read_text().strip()
        assert sorted(created for _, created in got) == [False, True]
        assert [keys for keys, _ in got] == [(held,), (held,)]
