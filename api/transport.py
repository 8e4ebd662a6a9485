"""uvicorn's HTTP protocol with each response's head and body sent in one write.

uvicorn writes a response's head when the app starts it and its body when the
app sends it: two sends, and two wake-ups of a client waiting for the answer.
Measured with py-spy, those two writes were half the API worker's busy time on
a GET of a 300 KB document, and a tenth of it on a write. This protocol holds
a response head back until the body's write comes, on the same turn of the
event loop in Starlette's responses, and passes both on together (one writev
with uvloop). A head with no body write after it goes out at the loop's next
turn, so nothing waits on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol"]

_HEAD_END = b"\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 "  # an interim answer the client waits for: never held
_MAX_HEAD = 8192


class _Coalescing:
    """A transport that holds a response head back for the write that follows it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            head, self._held = self._held, None
            self._transport.writelines((head, data))
            return
        if (
            len(data) <= _MAX_HEAD
            and bytes(data[-4:]) == _HEAD_END
            and bytes(data[:13]) != _CONTINUE
        ):
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            head, self._held = self._held, None
            if not self._transport.is_closing():  # (a client gone meanwhile: as uvicorn does)
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # every other call is the transport's
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a transport that sends head and body together."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = _Coalescing(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)  # type: ignore[arg-type]
