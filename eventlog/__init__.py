"""tradelog's write side: the event log (file and stream), the writer, the relay."""

from __future__ import annotations

from ._exceptions import (
    CorruptLog,
    InvalidInput,
    LogUnavailable,
    RedisUnavailable,
    TradelogError,
    VersionConflict,
)
from .commands import AppendResult
from .records import StoredEvent
from .settings import Settings, load_settings
from .writer import Writer

__all__ = [
    "AppendResult",
    "CorruptLog",
    "InvalidInput",
    "LogUnavailable",
    "RedisUnavailable",
    "Settings",
    "StoredEvent",
    "TradelogError",
    "VersionConflict",
    "Writer",
    "load_settings",
]
