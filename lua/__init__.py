"""The Lua scripts, loaded by file name."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["source"]


@cache
def source(name: str) -> str:
    """The text of `lua/<name>`."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
