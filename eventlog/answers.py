"""Where a committed command's answer goes: the Future its caller waits on.

A caller on a thread waits on a concurrent Future, which the commit loop's thread can
settle directly. A coroutine waits on an asyncio Future, which only its own loop may
touch: its answers go over in one call_soon_threadsafe per loop and batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import InvalidStateError
from typing import Any

from .commands import AppendResult, Command

__all__ = ["Job", "settle"]

# A queued command and where its answer goes: a concurrent Future (loop None) or an
# asyncio Future of `loop`, settled in one call_soon_threadsafe per loop and batch.
Job = tuple[Command, Any, asyncio.AbstractEventLoop | None]


def _settle_async(items: list[tuple[asyncio.Future[AppendResult], Any]]) -> None:
    for fut, value in items:
        if fut.done():  # the request was cancelled meanwhile
            continue
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)


def settle(answers: list[tuple[Job, Any]]) -> None:
    """Set each job's answer, a result or an exception, on its Future (one its caller
    cancelled, or answered already, is left as it is)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
    for (_, fut, loop), value in answers:
        if loop is not None:
            by_loop.setdefault(loop, []).append((fut, value))
            continue
        with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle_async, items)
