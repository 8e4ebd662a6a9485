"""The writer's decisions: what each command of a batch appends, and what it answers.

Decided on a partition's command side (state.py), in the batch's order: the
version check, an idempotent retry answered from its receipt (or, for a keyed
write that appended nothing, from its shared no-op receipt), friends that are
not there to remove, a legacy file imported already; a peek only answers the
account's version. Every decided event is observed at once, so the next command
of the batch sees it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import uuid_utils

from ._exceptions import IdempotencyKeyReused, InvalidInput, VersionConflict
from .answers import Job
from .commands import PEEK, AppendResult, Command, encode_data
from .records import FRIENDS_REMOVED, LEGACY_IMPORTED, REQUESTED_FRIENDS, StoredEvent, utc_ts
from .state import Findings, NoOp, PartitionState

__all__ = ["answer", "decide_all"]

_PEEKED = Findings("read")


def decide_all(
    state: PartitionState, p: int, next_offset: int, batch: list[Job],
    outcomes: list[tuple[Job, Any]],
) -> list[StoredEvent]:  # fmt: skip
    """The events `batch` appends from `next_offset` on; each job's outcome (findings,
    where its event went and the account's version then, or a VersionConflict, or
    InvalidInput for data too deep to store) in `outcomes`. The version is taken now:
    the answer may be built after a later batch has moved the account on."""
    events: list[StoredEvent] = []
    ts = utc_ts()  # one clock read per batch: every event of it is appended at once
    for job in batch:
        if job[0].type == PEEK:  # (not state.account: a peek adds no account to the state)
            known = state.accounts.get(job[0].account)
            outcomes.append((job, (_PEEKED, (None, False, known.version if known else 0))))
            continue
        try:
            event, findings, duplicate = _decide(state, p, job[0], next_offset, ts)
        except (VersionConflict, InvalidInput, IdempotencyKeyReused) as e:
            outcomes.append((job, e))
            continue
        if event is None:
            version = state.account(job[0].account).version
        else:
            version = event.version
            if not duplicate:
                events.append(event)
                next_offset += 1
        outcomes.append((job, (findings, (event, duplicate, version))))
    return events


def _decide(
    state: PartitionState, p: int, cmd: Command, offset: int, ts: str
) -> tuple[StoredEvent | None, Findings, bool]:
    acct = state.account(cmd.account)
    key = cmd.idempotency_key
    if key:
        receipt = state.receipts.get((cmd.account, key))
        if receipt is not None:
            return receipt.event(cmd.account, p), receipt.findings, True
        noop = state.noop(cmd.account, key, ts)
        if noop is not None:  # the retry of a write that appended nothing: nothing again
            if noop.type != cmd.type or noop.asked != _asked(cmd):
                raise IdempotencyKeyReused(key, cmd.account, acct.version, noop.type)
            return None, noop.findings, False
    if cmd.expected_version is not None and cmd.expected_version != acct.version:
        raise VersionConflict(cmd.account, cmd.expected_version, acct.version)
    data, meta = cmd.data, cmd.meta
    if cmd.type == FRIENDS_REMOVED:
        asked = data["friend_steam_ids"]
        present = [f for f in asked if f in acct.friends]
        if not present:
            return _nothing(state, cmd, Findings("removed"), ts)
        data = {"friend_steam_ids": present}
        if cmd.idempotency_key and len(present) < len(asked):
            meta = {**meta, REQUESTED_FRIENDS: asked}
    elif cmd.type == LEGACY_IMPORTED and acct.import_sha == data["source"]["sha256"]:
        return _nothing(state, cmd, Findings("unchanged"), ts)
    # Encoded here, before the event counts: data too deep to store is refused alone,
    # not in the middle of the batch's encode (which would fail every write in it).
    data_json = encode_data(data)
    event = StoredEvent(
        id=str(uuid_utils.uuid7()),
        account=cmd.account,
        version=acct.version + 1,
        partition=p,
        offset=offset,
        type=cmd.type,
        ts=ts,
        data=data,
        meta=meta,
        data_json=data_json,
    )
    return event, state.observe(event), False


def _asked(cmd: Command) -> str:
    """What a write that may append nothing asked for, to tell its retry from another."""
    if cmd.type == FRIENDS_REMOVED:
        # The set: the order removes nothing else.
        asked = "\n".join(sorted(set(cmd.data["friend_steam_ids"])))
        return hashlib.blake2b(asked.encode(), digest_size=16).hexdigest()
    if cmd.type == LEGACY_IMPORTED:
        return str(cmd.data["source"]["sha256"])
    return ""


def _nothing(
    state: PartitionState, cmd: Command, findings: Findings, ts: str
) -> tuple[None, Findings, bool]:
    """A write that appends nothing; with a key, remembered so that its retry does not
    act on what changed since (a friend added back would be removed)."""
    if cmd.idempotency_key:
        noop = NoOp(cmd.type, _asked(cmd), findings, ts)
        state.noted(cmd.account, cmd.idempotency_key, noop)
    return None, findings, False


def answer(
    p: int, cmd: Command, findings: Findings,
    placed: tuple[StoredEvent | None, bool, int], redis_ok: bool, stream_top: int,
) -> AppendResult:  # fmt: skip
    """What a decided command answers; a retry's event is in the stream if the stream's
    known top (`stream_top`) has reached it."""
    event, duplicate, version = placed
    if event is None:
        return AppendResult(
            cmd.account, version, p, None, None, None,
            appended=False, duplicate=False, redis_written=False, findings=findings,
        )  # fmt: skip
    return AppendResult(
        cmd.account, event.version, p, event.offset, event.id, event.ts,
        appended=not duplicate, duplicate=duplicate,
        redis_written=redis_ok if not duplicate else event.offset <= stream_top,
        findings=findings,
    )  # fmt: skip
