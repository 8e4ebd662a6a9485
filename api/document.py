"""GET /negotiations/{steamId}: the document from the phase's projection, never
older than what this process has read of the account in the log.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog._exceptions import ProjectionBehind
from eventlog.records import partition_of, utc_ts
from projections.fold import default_document

from .http import JSON, account_of, etag, guarded
from .state import AppState, app_state

__all__ = ["get_document"]


@guarded()
async def get_document(request: Request) -> Response:
    account = account_of(request)
    st = app_state(request)
    seen = st.writer.seen(account)
    # This worker has not read the partition (or must again): what the log holds, first.
    # (A wait of 0 asks for no read-your-writes: the projection's document as it is.)
    if seen is None and st.settings.projection_wait_ms > 0:
        seen = await st.writer.peek_async(account)
    raw, version = await st.reads.document_json(account)
    _check_parked(st, account, version, seen, fresh=False)
    if raw is None:  # (a parked one is answered above: its park says what to do)
        st.reads.check_imported(account, seen)
    if seen is not None and seen > version and st.settings.projection_wait_ms > 0:
        raw, version = await _projected_to(st, account, seen, raw, version)
    created_new = raw is None
    data: Any = default_document(account, utc_ts()) if raw is None else orjson.Fragment(raw)
    body = {
        "success": True,
        "data": data,
        "created_new": created_new,
        "source": st.reads.source,
        "version": version,
    }
    return JSON(body, headers=etag(version))


async def _projected_to(
    st: AppState, account: str, seen: int, raw: bytes | None, version: int
) -> tuple[bytes | None, int]:
    """The document once the read projection holds version `seen` (read again at each
    step the projector takes in the account's partition); ProjectionBehind if it does
    not within the wait's bound, or at once if the projection parked the account. A
    stale document is never served: a bot saves back whole what it loaded."""
    _check_parked(st, account, version, seen, fresh=True)
    p = partition_of(account, st.settings.partitions)
    deadline = time.monotonic() + st.settings.projection_wait_ms / 1000
    while version < seen and (left := deadline - time.monotonic()) > 0:
        await st.waiter.wait(p, st.waiter.positions.get(p, 0), left)  # its next step
        raw, version = await st.reads.document_json(account)
    if version < seen:
        _check_parked(st, account, version, seen, fresh=True)  # parked while it waited
        raise ProjectionBehind(account, version, seen)
    return raw, version


def _check_parked(st: AppState, account: str, version: int, seen: int | None, fresh: bool) -> None:
    """ProjectionBehind if the read projection parked the account: it stays at the last
    version it could apply until an operator re-applies it, so no wait helps, and its
    document is older than the log (a bot would save it back whole)."""
    parked = st.reads.parked(account, fresh=fresh)
    if parked is not None:
        why, logged = parked
        raise ProjectionBehind(account, version, max(logged, seen or 0), (st.reads.source, why))
