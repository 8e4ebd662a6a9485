"""The legacy negotiation writes, as events: each answers after its event is
projected (bounded). The document's read is document.py's.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from eventlog._exceptions import InvalidInput, TradelogError
from eventlog.commands import AppendResult
from eventlog.events import check_steam_id
from eventlog.records import (
    FRIEND_NEGOTIATION_UPSERTED,
    FRIENDS_REMOVED,
    NEGOTIATIONS_SAVED,
    TRADE_OFFER_UPSERTED,
)

from . import metrics
from .http import JSON, account_of, etag, guarded, if_match, read_json
from .request_ids import request_id
from .retries import check_retry
from .state import AppState, app_state

__all__ = [
    "delete_friend",
    "remove_friends",
    "save_document",
    "upsert_friend",
    "upsert_trade_offer",
]

# What the bots call the offer of an atomic upsert (the event calls it `offer`).
_SENT = "trade_offer_data"


async def _append(
    request: Request, account: str, kind: str, data: Any, expected: int | None
) -> tuple[AppendResult, dict[str, Any]]:
    st = app_state(request)
    started = time.perf_counter()
    st.reads.check_imported(account, st.writer.seen(account))
    cmd = st.writer.command(
        account,
        kind,
        data,
        expected,
        request.headers.get("idempotency-key"),
        # Every API event names its request (DESIGN: meta.request_id), the one its
        # answer's X-Request-Id names.
        request_id=request_id(request),
        source="api",
    )
    result = await st.writer.submit_async(cmd)
    if result.duplicate:
        result = await check_retry(st.settings, st.writer.stream, cmd, result)
    metrics.observe_append(
        kind, result, time.perf_counter() - started, st.writer.stream is not None
    )
    projected = True
    if result.offset is not None and st.settings.phase >= 2 and not result.redis_written:
        # The Redis projection reads the stream, which lacks this event until the
        # relay copies it: waiting could only time out.
        projected = False
    elif result.offset is not None:
        projected = await st.waiter.wait(
            result.partition, result.offset, st.settings.projection_wait_ms / 1000
        )
        if projected and _parked(st, account):
            # The projector moved past the event but parked it, with the account's
            # later events: the read projection does not hold it.
            projected = False
    fields = {
        "version": result.version,
        "position": result.position,
        "event_id": result.event_id,
        "redis_written": result.redis_written,
        "projected": projected,
        "appended": result.appended,
    }
    return result, fields


def _parked(st: AppState, account: str) -> bool:
    """Whether the read projection has parked the account; False where that cannot be
    told now. Asked afresh: the write just waited for may be the one that parked it."""
    try:
        return st.reads.is_parked(account)
    except TradelogError:  # (the write is appended: a Redis gone meanwhile fails no answer)
        return False


@guarded()
async def save_document(request: Request) -> Response:
    account = account_of(request)
    doc = _object_body(await read_json(request), "the whole account document")
    result, fields = await _append(request, account, NEGOTIATIONS_SAVED, doc, if_match(request))
    negotiations = doc.get("negotiations") or {}
    body = {
        "success": True,
        "message": "negotiations saved",
        "steam_id": account,
        "negotiations_count": len(negotiations),
        "trade_offers_count": len(doc.get("trade_offers") or ()),
        "updated_at": result.ts,
        **fields,
    }
    return JSON(body, headers=etag(result.version))


def _object_body(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(f"request body must be a JSON object with {what}", code="invalid_body")
    return body


def _as_sent(e: InvalidInput) -> InvalidInput:
    """An offer's error in the request's terms: the event's `offer` is the body's
    `trade_offer_data`, and the bots print `error` as it is."""
    if not e.message.startswith(("offer:", "offer.")):
        return e
    details = e.details
    if isinstance(details, list):
        details = [
            {**d, "loc": [_SENT, *d["loc"][1:]]} if d.get("loc", [None])[0] == "offer" else d
            for d in details
        ]
    return InvalidInput(_SENT + e.message[len("offer") :], e.code, details)


def _redis_operation(st: AppState, result: AppendResult) -> str:
    """What became of the stream entry: written; deferred (the relay copies it); or
    disabled, when no Redis is configured (file only)."""
    if result.redis_written:
        return "written"
    return "deferred" if st.writer.stream is not None else "disabled"


@guarded()
async def upsert_trade_offer(request: Request) -> Response:
    account = account_of(request)
    body = _object_body(await read_json(request), '"trade_offer_data"')
    expected = if_match(request, body.get("expected_version"))
    offer = body.get("trade_offer_data")
    try:
        result, fields = await _append(
            request, account, TRADE_OFFER_UPSERTED, {"offer": offer}, expected
        )
    except InvalidInput as e:
        sent = _as_sent(e)
        if sent is e:
            raise
        raise sent from e
    f = result.findings
    body = {
        "success": True,
        "operation": f.operation,
        "trade_offer_id": offer["trade_offer_id"] if isinstance(offer, dict) else None,
        "state": f.state,
        "previous_state": f.previous_state,
        "updated_at": result.ts,
        "redis_operation": _redis_operation(app_state(request), result),
        **fields,
    }
    return JSON(body, headers=etag(result.version))


@guarded()
async def upsert_friend(request: Request) -> Response:
    account = account_of(request)
    friend = check_steam_id(request.path_params["friend_id"], "friendSteamId")
    record = _object_body(await read_json(request), "the friend's negotiation record")
    data = {"friend_steam_id": friend, "negotiation": record}
    result, fields = await _append(
        request, account, FRIEND_NEGOTIATION_UPSERTED, data, if_match(request)
    )
    f = result.findings
    body = {
        "success": True,
        "operation": f.operation,
        "friend_steam_id": friend,
        "state": f.state,
        "previous_state": f.previous_state,
        "updated_at": result.ts,
        **fields,
    }
    return JSON(body, headers=etag(result.version))


@guarded()
async def delete_friend(request: Request) -> Response:
    account = account_of(request)
    friend = check_steam_id(request.path_params["friend_id"], "friendSteamId")
    data = {"friend_steam_ids": [friend]}
    result, fields = await _append(request, account, FRIENDS_REMOVED, data, if_match(request))
    f = result.findings
    removed = friend in f.removed
    body = {
        "success": True,
        "removed": removed,
        "friend_steam_id": friend,
        "previous_state": f.previous_state if removed else None,
        "message": "friend removed" if removed else "friend not found; nothing changed",
        **fields,
    }
    return JSON(body, headers=etag(result.version))


@guarded()
async def remove_friends(request: Request) -> Response:
    account = account_of(request)
    body = _object_body(await read_json(request), '"friend_steam_ids"')
    expected = if_match(request, body.get("expected_version"))
    data = {k: v for k, v in body.items() if k == "friend_steam_ids"}  # absent: "required"
    result, fields = await _append(request, account, FRIENDS_REMOVED, data, expected)
    removed = list(result.findings.removed)
    asked = data["friend_steam_ids"]
    body = {
        "success": True,
        "removed_count": len(removed),
        "removed_friends": removed,
        "not_found": [f for f in dict.fromkeys(asked) if f not in removed],
        **fields,
    }
    return JSON(body, headers=etag(result.version))
