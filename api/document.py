"""GET /negotiations/{steamId}: the document from the phase's projection, never
older than what this process has read of the account in the log.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog._exceptions import ProjectionBehind
from eventlog.events import check_steam_id
from eventlog.records import partition_of, utc_ts
from projections.fold import default_document

from .http import JSON, etag, guarded
from .state import AppState, app_state

__all__ = ["get_document"]


@guarded()
async def get_document(request: Request) -> Response:
    account = check_steam_id(request.path_params["steam_id"], "steamId")
    st = app_state(request)
    raw, version = await st.reads.document_json(account)
    seen = st.writer.seen(account)
    if seen is not None and seen[0] > version:
        raw, version = await _projected_to(st, account, *seen)
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
    st: AppState, account: str, logged: int, end: int
) -> tuple[bytes | None, int]:
    """The document once the read projection holds the account's events this process
    has seen (to `end` in its partition); ProjectionBehind if it does not in the wait's
    bound. A stale document is never served: a bot saves back whole what it loaded."""
    p = partition_of(account, st.settings.partitions)
    await st.waiter.wait(p, end - 1, st.settings.projection_wait_ms / 1000)
    raw, version = await st.reads.document_json(account)
    if version < logged:
        raise ProjectionBehind(account, version, logged)
    return raw, version
