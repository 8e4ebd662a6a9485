"""HTTP plumbing: orjson responses, the error shape, body limits, keys, versions.

Every answer is JSON with `success`; every error is
`{"success": false, "error": "<readable>", "code": "<machine code>", "details": ...}`
because the bots' client prints `error` and branches on the status alone.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog._exceptions import (
    CorruptLog,
    CorruptSnapshot,
    IdempotencyKeyReused,
    InvalidInput,
    LegacyNotImported,
    LogUnavailable,
    PayloadTooLarge,
    ProjectionBehind,
    RedisUnavailable,
    SnapshotUnavailable,
    TradelogError,
    Unauthorized,
    VersionConflict,
)
from eventlog.commands import MAX_VERSION
from eventlog.events import check_steam_id

from .json_body import parse_body

__all__ = [
    "JSON",
    "account_of",
    "error_response",
    "guarded",
    "if_match",
    "internal_error",
    "read_json",
]

log = logging.getLogger("tradelog.api")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(status: int, message: str, code: str, details: Any = None) -> JSON:
    body = {"success": False, "error": message, "code": code, "details": details}
    return JSON(body, status_code=status)


def internal_error() -> JSON:
    """The answer to a bug: every write's own errors are raised before or by the append."""
    return error_response(500, "internal error; nothing was appended", "internal_error")


def _status_of(e: TradelogError) -> tuple[int, str, Any]:
    if isinstance(e, InvalidInput):
        return 400, e.code, e.details
    if isinstance(e, VersionConflict):
        return 409, "version_conflict", {"expected": e.expected, "current": e.actual}
    if isinstance(e, IdempotencyKeyReused):
        return 422, "idempotency_key_reused", {"version": e.version, "type": e.type}
    if isinstance(e, Unauthorized):
        return 401, "unauthorized", None
    if isinstance(e, PayloadTooLarge):
        return 413, "payload_too_large", {"limit": e.limit}
    if isinstance(e, ProjectionBehind):
        details = {"version": e.projected, "log_version": e.logged}
        if e.parked is not None:
            return 503, "account_parked", {**details, "parked": e.parked[1]}
        return 503, "projection_behind", details
    if isinstance(e, CorruptLog):  # an operator mends the line; nothing was appended
        return 503, "log_damaged", {"file": e.path, "line": e.line}
    if isinstance(e, (LogUnavailable, RedisUnavailable)):
        return 503, "unavailable", None
    if isinstance(e, LegacyNotImported):  # nothing appended: import-legacy first
        return 503, "legacy_not_imported", {"file": e.path}
    if isinstance(e, (CorruptSnapshot, SnapshotUnavailable)):
        return 503, "snapshot_unreadable", None  # the projector parks it; replay mends it
    return 500, "internal_error", None


Handler = Callable[[Request], Awaitable[Response]]


def guarded(auth: bool = True) -> Callable[[Handler], Handler]:
    """Check the API key, and turn tradelog errors into the error shape.

    A 5xx always means nothing was appended (or an idempotent outcome): every
    write error is raised before the append or by the append itself.
    """

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                if auth:
                    check_key(request)
                return await handler(request)
            except TradelogError as e:
                status, code, details = _status_of(e)
                if status >= 500:  # a projection behind is the client's to retry
                    level = logging.WARNING if isinstance(e, ProjectionBehind) else logging.ERROR
                    log.log(level, "%s %s failed: %s", request.method, request.url.path, e)
                return error_response(status, str(e), code, details)
            except Exception:
                # A bug, answered here: Starlette's last-resort handler raises it again
                # after answering, and uvicorn then drops the client's kept-alive
                # connection (its next request on it fails).
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return internal_error()

        return endpoint

    return wrap


def account_of(request: Request) -> str:
    """The account the route's path names: a valid SteamID64, else InvalidInput."""
    return check_steam_id(request.path_params["steam_id"], "steamId")


def check_key(request: Request) -> None:
    keys: tuple[bytes, ...] = request.app.state.api_keys
    given = request.headers.get("x-api-key")
    if given is None:
        raise Unauthorized("missing X-API-Key header")
    raw = given.encode()
    # Compare against every key, always, so timing says nothing about which matched.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(raw, key)
    if not ok:
        raise Unauthorized("wrong API key")


async def read_json(request: Request) -> Any:
    """The body as JSON; 413 past the limit (checked while reading), 400 if not JSON."""
    limit: int = request.app.state.tradelog.settings.max_body_bytes
    declared = request.headers.get("content-length")
    # isascii: str.isdigit() is also true for "²", which int() refuses (a 500).
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise InvalidInput("request body is empty; a JSON object is required", code="invalid_json")
    return parse_body(body)


def if_match(request: Request, body_version: Any = None) -> int | None:
    """The expected version from `If-Match: "<n>"` (or the body's `expected_version`)."""
    header = request.headers.get("if-match")
    if header is not None and header.strip() != "*":
        text = header.strip()
        if text.startswith("W/"):
            text = text[2:]
        text = text.strip('"')
        # "²".isdigit() is true, and int() refuses it; the length keeps int() cheap.
        if not (text.isascii() and text.isdigit() and len(text) <= 19) or (int(text) > MAX_VERSION):
            raise InvalidInput(
                f'If-Match must be a version in quotes, like "3" (at most {MAX_VERSION}): '
                f"{header!r}",
                code="invalid_if_match",
            )
        return int(text)
    expected: int | None = body_version  # checked with the command (make_command)
    return expected


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}
