"""The generated API key: made once (mode 0600) when none is configured, kept after;
an empty key file (a crash between its creation and its write) is never taken as the
empty key, which would let every request in."""

from __future__ import annotations

import stat
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.keys import KEY_FILE, load_keys
from eventlog._exceptions import SettingsError
from eventlog.settings import Settings


def test_a_key_is_made_once_and_kept(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys=None)
    assert load_keys(settings) == ((), False)  # none made without asking
    (key,), created = load_keys(settings, create=True)
    assert created and len(key) >= 32
    path = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(settings, create=True) == ((key,), False)
    assert [p.name for p in settings.data_dir.iterdir() if "api_key" in p.name] == [KEY_FILE]


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


def test_a_key_made_meanwhile_by_another_process_is_the_key(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes making the key at once (`up` and a `serve`): the one that comes
    second takes the first one's key, not an error."""
    import os

    settings = make_settings(api_keys=None)
    real_link = os.link

    def link(src: str, dst: str) -> None:
        with open(dst, "x") as f:  # the other process, just before
            f.write("theirs\n")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    assert load_keys(settings, create=True) == (("theirs",), False)
    assert [p.name for p in settings.data_dir.iterdir()] == [KEY_FILE]
