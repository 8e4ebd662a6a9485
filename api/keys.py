"""API keys: from TRADELOG_API_KEYS, else the data dir's generated key file."""

from __future__ import annotations

import contextlib
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
        made = _generate(path, replace=key is not None)
        held = path.read_text().strip()  # another process's, if it made one meanwhile
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"cannot write the API key file {path}: {e}") from e
    if not held:
        raise SettingsError(f"the API key file {path} is empty: delete it and start again")
    return (held,), held == made


def _generate(path: Path, replace: bool) -> str:
    """A new key, written whole to `path` (a crash leaves no empty or partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:  # an empty one (a crash between its creation and its write)
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process made one meanwhile
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return key
