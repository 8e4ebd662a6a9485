"""Comparing each account's fold of the log with what each projection holds of it.

The file snapshot is compared by its exact bytes first (the common case), then by the
document's top-level keys; Redis by its reassembly (`redis_reader.read_folds`). A
disagreement is judged against what the projectors said of themselves before the
pass: a projection that merely lags is "behind", not "different", and one ahead of
the fold is set aside to be judged again once the log is read on.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import redis

from eventlog._exceptions import CorruptProjection, CorruptSnapshot
from eventlog.keys import Keys
from eventlog.records import partition_of
from eventlog.settings import Settings

from .fold import Fold
from .redis_reader import read_fold, read_folds
from .replay_fold import Folded
from .snapshot_encode import encode
from .snapshots import current_tag, decode, foreign, snapshot_path, version_of
from .verify_report import Finding
from .whole_reads import read_tagged

__all__ = ["Held", "Judge", "VerifyJob", "consistent", "held_files", "held_redis"]


@dataclass(frozen=True, slots=True)
class VerifyJob:
    settings: Settings
    ends: dict[int, int]
    streams: bool  # compare with the streams (Redis reachable)
    projections: tuple[str, ...]
    positions: dict[str, dict[int, int]]  # projection -> partition -> next offset to apply
    parked: dict[str, dict[str, str]]  # projection -> parked account -> why
    present: dict[str, list[str]]  # projection -> accounts it holds in these partitions
    # Accounts whose membership of the Redis accounts set is wrong -> what is wrong.
    listing: dict[str, str]


@dataclass(slots=True)
class Held:
    """What a projection holds for an account."""

    fold: Fold | None
    version: int
    error: str | None = None  # it cannot be read back as a document
    legacy: bool = False  # a legacy file (no projection), where the log has no event


def _differences(want: Fold, have: Fold) -> list[str]:
    """The top-level keys whose values differ (or what else does, in parentheses)."""
    a, b = want.doc, have.doc
    keys = [
        k
        for k in dict.fromkeys([*a, *b])
        if k not in a or k not in b or orjson.dumps(a[k]) != orjson.dumps(b[k])
    ]
    if keys:
        return keys
    if list(a) != list(b):
        return ["(key order)"]
    if want.scores != have.scores:
        return ["(offer index scores)"]
    return []


class Judge:
    """Compares one job's folds with what each projection holds, account by account."""

    def __init__(self, job: VerifyJob, folded: Folded, offsets: dict[str, list[int]]) -> None:
        self.job, self.folded, self.offsets = job, folded, offsets
        self.partitions = job.settings.partitions
        self.agree: dict[str, int] = dict.fromkeys(job.projections, 0)
        self.findings: list[Finding] = []
        self.ahead: list[tuple[str, str, Held]] = []
        self.listing = dict(job.listing)  # `consistent` takes out what a projector mended

    def judge(self, projection: str, account: str, held: Held, final: bool = False) -> None:
        finding = self._finding(projection, account, held, final)
        if finding is None:
            self.agree[projection] += 1
        elif finding.kind == "ahead":
            self.ahead.append((projection, account, held))
        else:
            self.findings.append(finding)

    def _finding(self, projection: str, account: str, held: Held, final: bool) -> Finding | None:
        fold = self.folded.folds.get(account)
        v, x = (int(fold.doc["version"]) if fold else 0), held.version
        why = self.job.parked[projection].get(account)
        if held.legacy and (fold is None or why is not None):
            # The one copy of a legacy document, which a repair from the log would replace.
            detail = why or "a legacy file the log has not imported (tradelog import-legacy)"
            return Finding(projection, account, "unimported", v, x, detail=detail)
        if why is not None:
            return Finding(projection, account, "parked", v, x, detail=why)
        if held.error is not None:
            return Finding(projection, account, "different", v, x, detail=held.error)
        bad = self.folded.poisoned.get(account)
        if bad is not None:
            detail = f"the log's version {bad.events[0].version} does not fold: {bad.error}"
            return Finding(projection, account, "different", v, x, detail=detail)
        if x == v:
            keys = _differences(fold, held.fold) if fold and held.fold else []
            if keys:
                return Finding(projection, account, "different", v, x, keys, "content differs")
            # The document agrees; the Redis accounts set may still list it wrongly.
            wrong = self.listing.get(account) if projection == "redis" else None
            if wrong is None:
                return None
            kind = "extra" if v == 0 else "different"
            return Finding(projection, account, kind, v, x, detail=wrong)
        if x > v:
            if not final:
                return Finding(projection, account, "ahead", v, x)  # read the log on first
            kind = "extra" if v == 0 else "different"
            return Finding(projection, account, kind, v, x, detail="beyond the log's version")
        p = partition_of(account, self.partitions)
        position = self.job.positions[projection].get(p, 0)
        if position <= self.offsets[account][x]:  # the offset of version x + 1
            detail = f"its projector is at offset {position} of partition {p}"
            return Finding(projection, account, "behind", v, x, detail=detail)
        kind = "missing" if x == 0 else "different"
        detail = f"its projector passed offset {self.offsets[account][x]} of partition {p}"
        return Finding(projection, account, kind, v, x, detail=detail)


def held_files(settings: Settings, folded: Folded, accounts: list[str]) -> dict[str, Held]:
    out: dict[str, Held] = {}
    for account in accounts:
        path = snapshot_path(settings, account)
        read = read_tagged(path)
        if read is None:
            out[account] = Held(None, 0)
            continue
        raw, tag = read
        # In the snapshot's own layout: tagged, or from before tags (or where there are none).
        tag = current_tag(tag, version_of(raw))
        tagged = tag is not None
        fold = folded.folds.get(account)
        expected = encode(fold, tagged=tagged) if fold is not None else None
        if fold is not None and (raw, tag) == expected:  # byte for byte: the common case
            out[account] = Held(fold, int(fold.doc["version"]))
            continue
        try:
            got = decode(raw, str(path), tag)
        except CorruptSnapshot as e:
            # A JSON document with no applied version is no projection but a legacy file:
            # imported (the projector has yet to write it), or not, which reads refuse.
            legacy = foreign(raw)
            out[account] = Held(None, 0, None if legacy else str(e), legacy=legacy)
            continue
        held = Held(got, int(got.doc["version"]))
        # The document's bytes as the projector encodes them; not the tag's: its zlib
        # stream may differ between zlib builds, and its scores are compared as scores.
        if expected is not None and encode(got, tagged=tagged)[0] == expected[0] != raw:
            held.error = "the snapshot's bytes differ from the projector's encoding"
        out[account] = held
    return out


def consistent(client: redis.Redis, keys: Keys, accounts: list[str]) -> list[str]:
    """Of `accounts` (the first look found their accounts-set membership wrong), those
    listed exactly when they have a document now: a projector that ran between the
    first look's two reads (a SCAN of the documents, then the set) left them so."""
    pipe = client.pipeline(transaction=False)
    for account in accounts:
        pipe.sismember(keys.accounts(), account)
        pipe.exists(keys.meta(account))
    replies = pipe.execute()
    return [
        a
        for a, m, d in zip(accounts, replies[0::2], replies[1::2], strict=True)
        if bool(m) == bool(d)
    ]


def held_redis(client: redis.Redis, keys: Keys, accounts: list[str]) -> dict[str, Held]:
    try:
        got = read_folds(client, keys, accounts)
    except CorruptProjection:  # find which account cannot be read back
        got = {}
        out: dict[str, Held] = {}
        for account in accounts:
            try:
                got[account] = read_fold(client, keys, account)
            except CorruptProjection as e:
                out[account] = Held(None, 0, str(e))
        return out | {a: _held(a, f) for a, f in got.items()}
    return {a: _held(a, f) for a, f in got.items()}


def _held(account: str, fold: Fold | None) -> Held:
    if fold is None:
        return Held(None, 0)
    version = fold.doc.get("version")
    if type(version) is not int:  # its hashes were changed by hand: the field order
        detail = f"the Redis projection of {account} reads back with no version"
        return Held(None, 0, detail)
    return Held(fold, version)
