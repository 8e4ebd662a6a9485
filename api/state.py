"""What one API process holds: built once at start-up, reached from every handler."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from starlette.requests import Request

from eventlog.settings import Settings
from eventlog.writer import Writer

if TYPE_CHECKING:
    from .reads import Reads
    from .waiting import ProgressWaiter

__all__ = ["AppState", "app_state"]


@dataclass
class AppState:
    settings: Settings
    writer: Writer
    reads: Reads
    waiter: ProgressWaiter
    started: float = field(default_factory=time.monotonic)


def app_state(request: Request) -> AppState:
    return cast(AppState, request.app.state.tradelog)
