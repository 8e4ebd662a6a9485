"""API keys: from TRADELOG_API_KEYS, else the data dir's generated key file."""

from __future__ import annotations

import os
import secrets

from eventlog.settings import Settings

__all__ = ["KEY_FILE", "load_keys"]

KEY_FILE = "api_key"


def load_keys(settings: Settings, create: bool = False) -> tuple[tuple[str, ...], bool]:
    """The accepted keys, and whether a new key was just generated (to tell the operator).

    With no configured keys, the key in `<data_dir>/api_key` (mode 0600) is used;
    `create` makes one when there is none.
    """
    if settings.api_keys:
        return settings.api_keys, False
    path = settings.data_dir / KEY_FILE
    if path.is_file():
        return (path.read_text().strip(),), False
    if not create:
        return (), False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return (key,), True
