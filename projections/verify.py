"""Proving that the log, the streams and the projections agree: what `tradelog verify` runs.

One pass over the file log (partitions split over worker processes, as replay does)
does three things per partition: it compares each event's id with the stream entry at
the same offset (the first divergence and the missing tail are reported), folds every
account with `projections.fold.apply`, and then compares each account's fold with the
file snapshot (its exact bytes, then the document's top-level keys) and with the Redis
reassembly (`redis_reader.read_folds`).

A projection that merely lags is "behind", not "different": it holds a lower version
and its projector's published position has not passed the account's next event.
A projection ahead of the fold is read on against the log (a projector may have
applied events appended during the pass) before it is called different.
`repair` levels the streams (the relay, after cutting a diverging stream back) and
rebuilds each account found different with `projections.replay.replay_accounts`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis

from eventlog._exceptions import (
    CorruptProjection,
    CorruptSnapshot,
    RedisUnavailable,
    SnapshotUnavailable,
    TradelogError,
)
from eventlog.keys import Keys
from eventlog.records import StoredEvent, partition_of
from eventlog.relay import Relay
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog

from .checkpoint import check_partitions, read_checkpoint, read_parks
from .fold import Fold
from .redis_reader import read_fold, read_folds
from .replay import (
    Folded,
    Meter,
    Tick,
    fold_log,
    log_ends,
    redis_client,
    replay_accounts,
    run_jobs,
    split_partitions,
)
from .snapshots import decode, encode

__all__ = ["Finding", "StreamCheck", "VerifyReport", "repair", "verify"]

_FAILING = ("different", "missing", "extra", "parked")
_READ_BATCH = 200  # accounts per pipelined read of the Redis projection
_XRANGE = 5000


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
    kind: str  # different | missing | extra | parked | behind
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
    agree: dict[str, int] = field(default_factory=dict)  # projection -> accounts that agree
    findings: list[Finding] = field(default_factory=list)

    def failing(self, finding: Finding) -> bool:
        return finding.kind in _FAILING or (self.strict and finding.kind == "behind")

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
            "ok": self.ok,
            "strict": self.strict,
            "events": self.events,
            "accounts": self.accounts,
            "ends": {str(p): e for p, e in sorted(self.ends.items())},
            "streams": [s.as_dict() for s in self.streams],
            "projections": projections,
            "skipped": self.skipped,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    settings: Settings
    ends: dict[int, int]
    streams: bool  # compare with the streams (Redis reachable)
    projections: tuple[str, ...]
    positions: dict[str, dict[int, int]]  # projection -> partition -> next offset to apply
    parked: dict[str, dict[str, str]]  # projection -> parked account -> why
    present: dict[str, list[str]]  # projection -> accounts it holds in these partitions


@dataclass(slots=True)
class _Found:
    events: int
    accounts: int
    streams: list[StreamCheck]
    agree: dict[str, int]
    findings: list[Finding]


class _StreamWalk:
    """A partition's stream entries as (offset, event id), read in pages, compared in order."""

    def __init__(self, raw: redis.Redis, key: str, partition: int, file_end: int) -> None:
        self.raw, self.key = raw, key
        self.check = StreamCheck(partition, file_end, 0)
        self.page: list[tuple[int, bytes]] = []
        self.at = 0
        self.next_min = 0  # the lowest offset the next page starts from
        self.done = False

    def _fill(self) -> None:
        rows = cast(Any, self.raw.xrange(self.key, f"0-{self.next_min + 1}", "+", _XRANGE))
        self.page, self.at = [], 0
        for entry_id, values in rows:
            offset = int(bytes(entry_id).split(b"-", 1)[1]) - 1
            named = dict(zip(values[0::2], values[1::2], strict=True))
            self.page.append((offset, bytes(named.get(b"id", b""))))
        if self.page:
            self.next_min = self.page[-1][0] + 1
        self.done = len(rows) < _XRANGE

    def compare(self, events: list[StoredEvent]) -> None:
        if self.check.divergence is not None:
            return
        for event in events:
            if self.at >= len(self.page):
                if self.done:
                    return  # the stream ends here: the rest is its missing tail
                self._fill()
                if not self.page:
                    return
            offset, event_id = self.page[self.at]
            if offset > event.offset:
                self._diverge(event, None, "the stream has no entry at this offset")
                return
            if event_id.decode() != event.id:
                self._diverge(event, event_id.decode(), "another event at this offset")
                return
            self.at += 1

    def _diverge(self, event: StoredEvent, stream_id: str | None, why: str) -> None:
        self.check.divergence = {
            "offset": event.offset,
            "file_event": event.id,
            "stream_event": stream_id,
            "why": why,
        }

    def finish(self, log_end_now: int) -> StreamCheck:
        check = self.check
        top = cast(Any, self.raw.xrevrange(self.key, "+", "-", 1))
        check.stream_end = int(bytes(top[0][0]).split(b"-", 1)[1]) if top else 0
        check.missing_tail = max(0, check.file_end - check.stream_end)
        if check.divergence is None and check.stream_end > log_end_now:
            check.divergence = {
                "offset": log_end_now,
                "file_event": None,
                "stream_event": "…",
                "why": f"the stream holds {check.stream_end - log_end_now} entries "
                "beyond the end of the file log",
            }
        return check


@dataclass(slots=True)
class _Held:
    """What a projection holds for an account."""

    fold: Fold | None
    version: int
    error: str | None = None  # it cannot be read back as a document


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


class _Judge:
    """Compares one job's folds with what each projection holds, account by account."""

    def __init__(self, job: _Job, folded: Folded, offsets: dict[str, list[int]]) -> None:
        self.job, self.folded, self.offsets = job, folded, offsets
        self.partitions = job.settings.partitions
        self.agree: dict[str, int] = dict.fromkeys(job.projections, 0)
        self.findings: list[Finding] = []
        self.ahead: list[tuple[str, str, _Held]] = []

    def judge(self, projection: str, account: str, held: _Held, final: bool = False) -> None:
        finding = self._finding(projection, account, held, final)
        if finding is None:
            self.agree[projection] += 1
        elif finding.kind == "ahead":
            self.ahead.append((projection, account, held))
        else:
            self.findings.append(finding)

    def _finding(self, projection: str, account: str, held: _Held, final: bool) -> Finding | None:
        fold = self.folded.folds.get(account)
        v, x = (int(fold.doc["version"]) if fold else 0), held.version
        why = self.job.parked[projection].get(account)
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
            if not keys:
                return None
            return Finding(projection, account, "different", v, x, keys, "content differs")
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


def _held_files(settings: Settings, folded: Folded, accounts: list[str]) -> dict[str, _Held]:
    out: dict[str, _Held] = {}
    for account in accounts:
        path = settings.snapshot_dir / f"{account}.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            out[account] = _Held(None, 0)
            continue
        except OSError as e:
            raise SnapshotUnavailable(f"cannot read {path}: {e}") from e
        fold = folded.folds.get(account)
        if fold is not None and raw == encode(fold):  # byte for byte: the common case
            out[account] = _Held(fold, int(fold.doc["version"]))
            continue
        try:
            got = decode(raw, str(path))
        except CorruptSnapshot as e:
            # A JSON document with no applied version is no projection (a legacy file never
            # imported): reads ignore it, and so does this comparison.
            out[account] = _Held(None, 0, None if _foreign(raw) else str(e))
            continue
        held = _Held(got, int(got.doc["version"]))
        if fold is not None and encode(got) == encode(fold) and raw != encode(fold):
            held.error = "the snapshot's bytes differ from the projector's encoding"
        out[account] = held
    return out


def _foreign(raw: bytes) -> bool:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and not (type(doc.get("version")) is int and doc["version"] > 0)


def _held_redis(client: redis.Redis, keys: Keys, accounts: list[str]) -> dict[str, _Held]:
    try:
        got = read_folds(client, keys, accounts)
    except CorruptProjection:  # find which account cannot be read back
        got = {}
        out: dict[str, _Held] = {}
        for account in accounts:
            try:
                got[account] = read_fold(client, keys, account)
            except CorruptProjection as e:
                out[account] = _Held(None, 0, str(e))
        return out | {a: _Held(f, int(f.doc["version"]) if f else 0) for a, f in got.items()}
    return {a: _Held(f, int(f.doc["version"]) if f else 0) for a, f in got.items()}


def _verify_job(job: _Job, tick: Tick | None) -> _Found:
    settings, keys = job.settings, Keys(job.settings.key_prefix)
    need_redis = job.streams or "redis" in job.projections
    client = redis_client(settings) if need_redis else None
    offsets: dict[str, list[int]] = {}
    walks: dict[int, _StreamWalk] = {}
    if client is not None and job.streams:
        raw = redis.Redis(connection_pool=client.connection_pool)
        for command in ("XRANGE", "XREVRANGE"):  # flat replies: no dict per entry
            raw.set_response_callback(command, lambda reply, **options: reply)
        walks = {p: _StreamWalk(raw, keys.log(p), p, end) for p, end in job.ends.items()}

    def observe(p: int, events: list[StoredEvent]) -> None:
        walk = walks.get(p)
        if walk is not None:
            walk.compare(events)
        for event in events:
            offsets.setdefault(event.account, []).append(event.offset)

    try:
        folded = fold_log(settings, job.ends, Folded(), tick=tick, observe=observe)
        now = log_ends(settings)
        streams = [walks[p].finish(now[p]) for p in sorted(walks)]
        judge = _Judge(job, folded, offsets)
        for projection in job.projections:
            mine = folded.folds.keys() | folded.poisoned.keys() | set(job.present[projection])
            accounts = sorted(mine)
            for i in range(0, len(accounts), _READ_BATCH):
                batch = accounts[i : i + _READ_BATCH]
                if projection == "file":
                    held = _held_files(settings, folded, batch)
                else:
                    held = _held_redis(cast(redis.Redis, client), keys, batch)
                for account in batch:
                    judge.judge(projection, account, held[account])
        _read_on(job, folded, offsets, judge, now)
    except redis.RedisError as e:
        raise RedisUnavailable(f"verify cannot read Redis: {e}") from e
    finally:
        if client is not None:
            client.close()
    count = len(folded.folds.keys() | folded.poisoned.keys())
    return _Found(folded.events, count, streams, judge.agree, judge.findings)


def _read_on(
    job: _Job, folded: Folded, offsets: dict[str, list[int]], judge: _Judge, now: dict[int, int]
) -> None:
    """Judge again the accounts a projection holds ahead of the fold, after folding their
    events appended since the pass read the log."""
    if not judge.ahead:
        return
    wanted = frozenset(account for _, account, _ in judge.ahead)
    more = Folded(wanted=wanted)
    more.folds.update({a: f for a, f in folded.folds.items() if a in wanted})
    more.last.update({a: o for a, o in folded.last.items() if a in wanted})
    more.poisoned.update({a: b for a, b in folded.poisoned.items() if a in wanted})
    parts = {partition_of(a, job.settings.partitions) for a in wanted}

    def note(p: int, events: list[StoredEvent]) -> None:
        for event in events:
            if event.account in wanted:
                offsets.setdefault(event.account, []).append(event.offset)

    fold_log(job.settings, {p: now[p] for p in parts}, more, start=job.ends, observe=note)
    pending, judge.ahead, judge.folded = judge.ahead, [], more
    for projection, account, held in pending:
        judge.judge(projection, account, held, final=True)


# --- the whole check, and the repair ----------------------------------------------------------


def _redis_or_why(settings: Settings) -> tuple[redis.Redis | None, str | None]:
    if not settings.redis_enabled:
        return None, "Redis is disabled (TRADELOG_REDIS_URL is empty)"
    client = redis_client(settings)
    try:
        client.ping()
    except redis.RedisError as e:
        client.close()
        return None, f"Redis at {settings.redis_url} is unreachable: {e}"
    return client, None


def _file_state(settings: Settings) -> tuple[dict[int, int], dict[str, str], list[str]]:
    """The file projector's positions, parked accounts, and the accounts it holds."""
    try:
        names = os.listdir(settings.snapshot_dir)
    except FileNotFoundError:
        names = []
    except OSError as e:
        raise SnapshotUnavailable(f"cannot list {settings.snapshot_dir}: {e}") from e
    present = [n[:-5] for n in names if n.endswith(".json") and n[:-5].isdigit()]
    parked = {a: r.error for a, r in read_parks(settings).items()}
    return dict(read_checkpoint(settings).positions), parked, present


def _redis_state(
    client: redis.Redis, keys: Keys
) -> tuple[dict[int, int], dict[str, str], list[str]]:
    """The Redis projector's positions, parked accounts, and the accounts it holds."""
    progress = cast(dict[bytes, bytes], client.hgetall(keys.progress("redis")))
    positions = {int(k): int(v) for k, v in progress.items() if k.isdigit()}
    parked = {
        k.decode(): str(orjson.loads(v).get("error", ""))
        for k, v in cast(dict[bytes, bytes], client.hgetall(keys.parked())).items()
    }
    head = len(keys.meta(""))  # "<prefix>:meta:{" + "}" around the account
    present = {
        key.decode()[head - 1 : -1] for key in client.scan_iter(match=keys.meta("*"), count=10_000)
    }
    members = cast(set[bytes], client.smembers(keys.accounts()))
    present |= {m.decode() for m in members}
    return positions, parked, sorted(a for a in present if a.isdigit())


def verify(
    settings: Settings,
    *,
    strict: bool = False,
    workers: int | None = None,
    meter: Meter | None = None,
) -> VerifyReport:
    """Compare the file log with the streams and each projection with the fold of the log."""
    check_partitions(settings)
    report = VerifyReport(strict)
    client, why = _redis_or_why(settings)
    keys = Keys(settings.key_prefix)
    try:
        states = {"file": _file_state(settings)}
        if client is not None:
            states["redis"] = _redis_state(client, keys)
    except redis.RedisError as e:
        raise RedisUnavailable(f"verify cannot read Redis: {e}") from e
    finally:
        if client is not None:
            client.close()
    if why is not None:
        report.skipped = {"streams": why, "redis": why}
    ends = report.ends = log_ends(settings)
    if meter is not None:
        meter.start(sum(ends.values()), "verifying")
    jobs = []
    for group in split_partitions(ends, workers):
        present = {
            name: [a for a in state[2] if partition_of(a, settings.partitions) in group]
            for name, state in states.items()
        }
        positions = {name: state[0] for name, state in states.items()}
        parked = {name: state[1] for name, state in states.items()}
        jobs.append(_Job(settings, group, client is not None, tuple(states), positions,
                         parked, present))  # fmt: skip
    found: list[_Found] = run_jobs(_verify_job, jobs, meter.advance if meter else None)
    report.events = sum(f.events for f in found)
    report.accounts = sum(f.accounts for f in found)
    report.streams = sorted((s for f in found for s in f.streams), key=lambda s: s.partition)
    report.agree = {name: sum(f.agree[name] for f in found) for name in states}
    report.findings = sorted(
        (x for f in found for x in f.findings), key=lambda x: (x.projection, x.account)
    )
    return report


@dataclass(slots=True)
class RepairReport:
    streams: dict[int, str] = field(default_factory=dict)  # partition -> what was done
    relayed: int = 0  # entries the relay copied from the file log
    accounts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "streams": {str(p): what for p, what in sorted(self.streams.items())},
            "relayed": self.relayed,
            "accounts": self.accounts,
            "errors": self.errors,
        }


def _cut_stream(client: redis.Redis, key: str, offset: int) -> int:
    """Delete a stream's entries from `offset` on, and let it take entries after its new top
    again (XDEL leaves the stream's last ID where it was, and XADD refuses lower IDs)."""
    deleted = 0
    while rows := cast(Any, client.xrange(key, f"0-{offset + 1}", "+", 1000)):
        deleted += int(client.xdel(key, *[row[0] for row in rows]))
    top = cast(Any, client.xrevrange(key, "+", "-", 1))
    if client.exists(key):
        cast(Any, client).execute_command("XSETID", key, top[0][0] if top else "0-0")
    return deleted


def repair(settings: Settings, report: VerifyReport) -> RepairReport:
    """Level the streams that differ and rebuild the accounts found different.

    A stream that diverges is cut back to the divergence, then the relay copies the
    file's entries again (the stream is derived from the file, the truth). Accounts are
    rebuilt with `replay_accounts`; the file projection refuses while its daemon runs.
    """
    out = RepairReport()
    bad = [s for s in report.streams if not s.ok]
    if bad:
        client = redis_client(settings)
        keys = Keys(settings.key_prefix)
        try:
            for check in bad:
                cut = check.divergence["offset"] if check.divergence else check.stream_end
                deleted = _cut_stream(client, keys.log(check.partition), cut)
                out.streams[check.partition] = f"cut {deleted} entries from offset {cut}"
            out.relayed = Relay(settings, StreamLog(client, keys)).run_once().total
        except redis.RedisError as e:
            out.errors.append(f"streams: {RedisUnavailable(str(e))}")
        except TradelogError as e:
            out.errors.append(f"streams: {e}")
        finally:
            client.close()
    for projection in ("file", "redis"):
        accounts = sorted(
            {f.account for f in report.findings if f.projection == projection and report.failing(f)}
        )
        if not accounts:
            continue
        try:
            results = replay_accounts(settings, accounts, (projection,))
        except TradelogError as e:
            out.errors.append(f"{projection}: {e}")
            continue
        out.accounts[projection] = [r.as_dict() for r in results]
        out.errors += [f"{projection}: {r.account}: {r.error}" for r in results if r.error]
    return out
