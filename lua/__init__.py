"""The Lua scripts, loaded by file name."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["source"]


_INCLUDE = "-- #include "


@cache
def source(name: str) -> str:
    """The text of `lua/<name>`, each `-- #include <file>` line replaced by that file.

    Redis scripts cannot share code: the apply scripts' common opening
    (`_cas.lua`) is spliced in here, so it is written once.
    """
    text = files(__name__).joinpath(name).read_text(encoding="utf-8")
    lines = [
        source(line[len(_INCLUDE) :].strip()) if line.startswith(_INCLUDE) else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"
