"""What `tradelog verify` reports: each stream's check, each account's finding, the verdict.

Kept apart from the checking so the CLI and repair can read a report without the
machinery that made it. Which findings fail is decided here, in one place: a
projection that merely lags ("behind") passes while its projector runs, unless the
check is strict; with its projector stopped, what lags stays behind, and fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "StreamCheck", "VerifyReport"]

_FAILING = ("different", "missing", "extra", "parked", "unimported")


@dataclass(slots=True)
class StreamCheck:
    partition: int
    file_end: int  # events in the file log (the end the pass read to)
    stream_end: int  # the stream's last offset + 1
    missing_tail: int = 0  # entries the stream lacks at its end (it is behind the file)
    divergence: dict[str, Any] | None = None  # the first offset where the two differ

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.missing_tail == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "file_end": self.file_end,
            "stream_end": self.stream_end,
            "missing_tail": self.missing_tail,
            "first_divergence": self.divergence,
            "ok": self.ok,
        }


@dataclass(slots=True)
class Finding:
    """One account on which a projection and the fold of the log disagree (or lag)."""

    projection: str
    account: str
    kind: str  # different | missing | extra | parked | behind | unimported
    log_version: int
    projection_version: int
    keys: list[str] = field(default_factory=list)  # the top-level keys that differ
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "account": self.account,
            "kind": self.kind,
            "log_version": self.log_version,
            "projection_version": self.projection_version,
            "keys": self.keys,
            "detail": self.detail,
        }


@dataclass(slots=True)
class VerifyReport:
    strict: bool = False
    events: int = 0
    accounts: int = 0
    ends: dict[int, int] = field(default_factory=dict)
    streams: list[StreamCheck] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # what was not checked, and why
    # Redis is configured but did not answer: the streams and the Redis projection
    # were not checked, so agreement is not proven (disabled Redis is no such gap).
    unreachable: bool = False
    agree: dict[str, int] = field(default_factory=dict)  # projection -> accounts that agree
    findings: list[Finding] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)  # projection -> its projector's state

    def failing(self, finding: Finding) -> bool:
        if finding.kind == "behind":
            return self.strict or finding.projection in self.stopped
        return finding.kind in _FAILING

    @property
    def ok(self) -> bool:
        streams_ok = all(s.ok for s in self.streams)
        return streams_ok and not any(self.failing(f) for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        projections: dict[str, Any] = {}
        for name, agree in self.agree.items():
            mine = [f for f in self.findings if f.projection == name]
            projections[name] = {
                "agree": agree,
                "different": [f.as_dict() for f in mine if self.failing(f)],
                "behind": [f.as_dict() for f in mine if not self.failing(f)],
            }
        return {
            # A script reading only `ok` must not take a check of the files alone for a
            # proof: an incomplete verdict is not ok (the process exits 2).
            "ok": self.ok and not self.unreachable,
            "complete": not self.unreachable,
            "strict": self.strict,
            "stopped": self.stopped,
            "events": self.events,
            "accounts": self.accounts,
            "ends": {str(p): e for p, e in sorted(self.ends.items())},
            "streams": [s.as_dict() for s in self.streams],
            "projections": projections,
            "skipped": self.skipped,
        }
