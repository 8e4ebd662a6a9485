"""Every error tradelog raises: one root, one line on when each is raised.

Third-party errors (redis-py, OSError, orjson) are translated into these at the
boundary where they happen, so inner code and callers catch only these.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccountParked",
    "AlreadyUp",
    "CannotListen",
    "CheckpointAhead",
    "CorruptLog",
    "CorruptProjection",
    "CorruptSnapshot",
    "IdempotencyKeyReused",
    "InvalidInput",
    "LegacyNotImported",
    "LogUnavailable",
    "PartitionMismatch",
    "PayloadTooLarge",
    "ProjectionBehind",
    "ProjectionGap",
    "ProjectorBusy",
    "RedisUnavailable",
    "SettingsError",
    "SnapshotUnavailable",
    "StreamDamaged",
    "StreamMismatch",
    "TradelogError",
    "Unauthorized",
    "UnexpectedReply",
    "VersionConflict",
]


class TradelogError(Exception):
    """Raised for every failure tradelog itself reports (the root of all below)."""


class SettingsError(TradelogError):
    """Raised when a setting has a bad value; the message names the setting."""


class InvalidInput(TradelogError):
    """Raised when a command breaks the input rules, before anything is appended."""

    def __init__(self, message: str, code: str = "invalid_input", details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


class IdempotencyKeyReused(TradelogError):
    """Raised when an idempotency key comes back with another write than its first."""

    def __init__(self, key: str, account: str, version: int, type: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for another write on {account}: "
            f"{type}, version {version}; nothing was appended"
        )
        self.version = version
        self.type = type


class VersionConflict(TradelogError):
    """Raised when a write's expected version is not the account's current version."""

    def __init__(self, account: str, expected: int, actual: int) -> None:
        super().__init__(
            f"version conflict on {account}: expected version {expected}, current is {actual}"
        )
        self.account = account
        self.expected = expected
        self.actual = actual


class CorruptLog(TradelogError):
    """Raised when a complete line inside the log cannot be read; names file and line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"damaged log line: {path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class LogUnavailable(TradelogError):
    """Raised when the file log cannot be opened, locked, written or synced."""


class PartitionMismatch(TradelogError):
    """Raised when the data dir was made with another partition count than configured."""


class RedisUnavailable(TradelogError):
    """Raised when Redis cannot be reached or answers with an error."""


class StreamMismatch(TradelogError):
    """Raised when a stream's top is not the offset an append expects to follow."""

    def __init__(self, partition: int, expected_top: int, actual_top: int) -> None:
        super().__init__(
            f"stream of partition {partition} ends at offset {actual_top}, expected {expected_top}"
        )
        self.partition = partition
        self.expected_top = expected_top
        self.actual_top = actual_top


class StreamDamaged(TradelogError):
    """Raised when a stream refuses the log's next entries: entries at its end were deleted."""

    def __init__(self, partition: int, key: str, top: int) -> None:
        super().__init__(
            f"the stream {key} (partition {partition}) ends at offset {top} but its later "
            "entries were deleted, and its last ID still refuses them"
        )
        self.partition = partition
        self.key = key
        self.top = top


class ProjectionGap(TradelogError):
    """Raised when an event's version leaves a gap after the version a projection holds."""

    def __init__(self, account: str, held: int, got: int) -> None:
        super().__init__(f"version gap on {account}: projection holds {held}, event is {got}")
        self.account = account
        self.held = held
        self.got = got


class ProjectionBehind(TradelogError):
    """Raised when a read's projection stays behind what the log holds for its account."""

    def __init__(
        self, account: str, projected: int, logged: int, parked: tuple[str, str] | None = None
    ) -> None:
        """`parked`: the projection (file or redis) that parked the account, and why."""
        where = f"the read projection of {account} is at version {projected} and the log at "
        if parked is None:
            super().__init__(
                f"{where}{logged}: it is behind (is its projector running?); try again"
            )
        else:
            super().__init__(
                f"{where}{logged}: the account is parked there ({parked[1]}); its events wait "
                f"until `tradelog replay {parked[0]} --account {account}` applies them"
            )
        self.account = account
        self.projected = projected
        self.logged = logged
        self.parked = parked


class CannotListen(TradelogError):
    """Raised when the API's host and port cannot be listened on (taken, or not this host's)."""


class Unauthorized(TradelogError):
    """Raised when a request carries no API key or a wrong one."""


class PayloadTooLarge(TradelogError):
    """Raised when a request body is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class SnapshotUnavailable(TradelogError):
    """Raised when a snapshot, checkpoint or dead-letter file cannot be read or written."""


class CorruptSnapshot(TradelogError):
    """Raised when a snapshot file holds no projection tradelog wrote; names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unreadable snapshot {path}: {reason}")
        self.path = path
        self.reason = reason


class LegacyNotImported(TradelogError):
    """Raised when an account the log has no event of has a legacy file as its snapshot."""

    def __init__(self, account: str, path: str) -> None:
        super().__init__(
            f"{path} is a legacy file, and no event of {account} is known here: run "
            "`tradelog import-legacy` on its folder first (answered as a new account, it "
            "would have a bot save over it); if it was imported, the file projection has "
            "not written it yet: retry shortly"
        )
        self.account = account
        self.path = path


class ProjectorBusy(TradelogError):
    """Raised when another process already runs this projector on the data dir."""


class AlreadyUp(TradelogError):
    """Raised when another `tradelog up` already supervises the data dir."""


class CheckpointAhead(TradelogError):
    """Raised when a projector's checkpoint points past the end of the log it projects."""


class AccountParked(TradelogError):
    """Raised when a parked account's events still fail to apply; it stays parked."""

    def __init__(self, account: str, version: int, error: str) -> None:
        super().__init__(f"account {account} stays parked at version {version}: {error}")
        self.account = account
        self.version = version
        self.error = error


class CorruptProjection(TradelogError):
    """Raised when a projection's stored state cannot be read back as a document."""


class UnexpectedReply(TradelogError):
    """Raised when a Lua script answers with a status its header does not define."""
