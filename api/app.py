"""The Starlette application: routes, start-up and shut-down."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventlog.settings import Settings, load_settings
from eventlog.writer import Writer
from projections.gcpause import tune_for_service

from . import negotiations as neg
from . import ops
from .document import get_document
from .http import JSON, error_response, guarded, internal_error
from .keys import load_keys
from .openapi import openapi
from .reads import Reads
from .request_ids import RequestIds
from .state import AppState
from .waiting import ProgressWaiter

__all__ = ["create_app"]

log = logging.getLogger("tradelog.api")

_ACCOUNT = "/negotiations/{steam_id}"


@guarded()  # DESIGN: the key is required on every route but GET /health
async def _openapi(request: Request) -> Response:
    return JSON(openapi())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, str(exc.detail), code)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:  # Allow names every method of the path, not one route's
        response.headers["Allow"] = ", ".join(_methods_of(_route_path(request)))
    return response


def _route_path(request: Request) -> str:
    """The path the routes match: without the root path a proxy mounts the API under."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _methods_of(path: str) -> list[str]:
    """The methods of every route at `path` (a document's GET and POST are two routes)."""
    methods: set[str] = set()
    for route in ROUTES:
        if route.methods and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    response = internal_error()
    # Starlette answers a crash from its outermost layer, outside RequestIds.
    rid = request.scope.get("state", {}).get("request_id")
    if rid is not None:
        response.headers["X-Request-Id"] = rid
    return response


# Tried in order on every request: the bots' calls (upsert, load, save) come first.
ROUTES = [
    Route(_ACCOUNT + "/atomic-upsert-trade-offer", neg.upsert_trade_offer, methods=["POST"]),
    Route(_ACCOUNT, get_document, methods=["GET"]),
    Route(_ACCOUNT, neg.save_document, methods=["POST"]),
    Route(_ACCOUNT + "/friend/{friend_id}", neg.upsert_friend, methods=["PUT"]),
    Route(_ACCOUNT + "/friend/{friend_id}", neg.delete_friend, methods=["DELETE"]),
    Route(_ACCOUNT + "/remove-friends", neg.remove_friends, methods=["POST"]),
    Route(_ACCOUNT + "/events", ops.events, methods=["GET"]),
    Route(_ACCOUNT + "/health", ops.account_health, methods=["GET"]),
    Route("/health", ops.health, methods=["GET"]),
    Route("/ready", ops.ready, methods=["GET"]),
    Route("/metrics", ops.metrics_route, methods=["GET"]),
    Route("/openapi.json", _openapi, methods=["GET"]),
    Route("/negotiations", ops.summary, methods=["GET"]),
    Route("/negotiations/", ops.summary, methods=["GET"]),
]


def create_app(settings: Settings | None = None) -> Starlette:
    """The app for `settings` (default: built from the environment, for uvicorn workers)."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys, _ = load_keys(settings)
        app.state.api_keys = tuple(k.encode() for k in keys)
        writer = Writer(settings)
        reads = Reads(settings)
        waiter = ProgressWaiter(settings.run_dir, reads.projector, reads.durable_positions)
        waiter.start()
        app.state.tradelog = AppState(settings, writer, reads, waiter)
        tune_for_service()  # keep cyclic-GC pauses off the request path
        try:
            yield
        finally:
            waiter.close()
            writer.close()
            reads.close()

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(RequestIds)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
