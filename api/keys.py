"""API keys: from TRADELOG_API_KEYS, else the data dir's generated key file."""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from eventlog._exceptions import SettingsError
from eventlog.settings import Settings

__all__ = ["KEY_FILE", "load_keys"]

KEY_FILE = "api_key"


def load_keys(settings: Settings, create: bool = False) -> tuple[tuple[str, ...], bool]:
    """The accepted keys, and whether a new key was just generated (to tell the operator).

    With no configured keys, the key in `<data_dir>/api_key` (mode 0600) is used;
    `create` makes one when there is none, or when the file is empty. An empty key
    is never accepted: it would let every request in.
    """
    if settings.api_keys:
        return settings.api_keys, False
    path = settings.data_dir / KEY_FILE
    try:
        key = path.read_text().strip() if path.exists() else None
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"cannot read the API key file {path}: {e}") from e
    if key:
        return (key,), False
    if not create:
        if key is None:
            return (), False
        raise SettingsError(
            f"the API key file {path} is empty: delete it and run `tradelog up` to make "
            "a new key, or set TRADELOG_API_KEYS"
        )
    try:
        return _make(path)
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"cannot write the API key file {path}: {e}") from e


def _make(path: Path) -> tuple[tuple[str, ...], bool]:
    """The key, made unless another process (`up` and a `serve` starting together) made
    one meanwhile: under a lock beside it, so that exactly one key is ever printed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{KEY_FILE}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = path.read_text().strip() if path.exists() else ""
        if held:
            return (held,), False
        return (_generate(path),), True
    finally:
        os.close(fd)  # lets the lock go


def _generate(path: Path) -> str:
    """A new key, written whole to `path` (a crash leaves no empty or partial file).
    Hold the key's lock."""
    key = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # (over an empty one: a crash between its creation and write)
    finally:
        tmp.unlink(missing_ok=True)
    return key
