"""X-Request-Id: every request has one, and every answer names it.

The id is the client's `X-Request-Id` when it sends one, else one made here; a
write records it as its event's `meta.request_id`, and the answer carries it
back as `X-Request-Id`, so a client (or an operator reading its logs) can find
the event a request made, and tell which request an error answered.
"""

from __future__ import annotations

import uuid_utils
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestIds", "request_id"]

_HEADER = b"x-request-id"


class RequestIds:
    """ASGI middleware: names each HTTP request and puts the name on its answer.

    Plain ASGI rather than BaseHTTPMiddleware: that one runs every request
    through a second task and memory streams, which the write path cannot afford.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == _HEADER and v), None)
        if raw is None:
            raw = uuid_utils.uuid4().hex.encode()
        # Header bytes are latin-1 (what Starlette's request.headers decodes them as).
        scope.setdefault("state", {})["request_id"] = raw.decode("latin-1")

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (_HEADER, raw)]
            await send(message)

        await self.app(scope, receive, named)


def request_id(request: Request) -> str:
    """The request's id (set by RequestIds, which wraps every route)."""
    rid: str = request.scope["state"]["request_id"]
    return rid
