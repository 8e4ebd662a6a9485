"""The HTTP protocol's transport sends a response's head and body in one write, and
never holds back what a client waits for."""

from __future__ import annotations

import asyncio
from typing import Any

from api.transport import _Coalescing

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, parts: Any) -> None:
        self.calls.append(("writelines", [bytes(p) for p in parts]))

    def close(self) -> None:
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing


def _run(steps: Any, closing: bool = False) -> list[tuple[str, Any]]:
    async def go() -> list[tuple[str, Any]]:
        raw = _Recorder()
        raw.closing = closing
        transport = _Coalescing(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        steps(transport)
        await asyncio.sleep(0)  # the loop's next turn
        return raw.calls

    return asyncio.run(go())


def test_head_and_body_go_out_in_one_write() -> None:
    assert _run(lambda t: (t.write(HEAD), t.write(b"{}"))) == [("writelines", [HEAD, b"{}"])]


def test_a_head_with_no_body_write_goes_out_at_the_next_turn() -> None:
    assert _run(lambda t: t.write(HEAD)) == [("write", HEAD)]


def test_a_close_sends_a_held_head_first() -> None:
    assert _run(lambda t: (t.write(HEAD), t.close())) == [("write", HEAD), ("close", None)]


def test_what_a_client_waits_for_is_never_held() -> None:
    go_on = b"HTTP/1.1 100 Continue\r\n\r\n"
    big = b"x" * 10_000 + b"\r\n\r\n"
    calls = _run(lambda t: (t.write(go_on), t.write(big), t.write(b"tail")))
    assert calls == [("write", go_on), ("write", big), ("write", b"tail")]
    assert _run(lambda t: t.is_closing()) == []  # (the rest is the transport's own)


def test_a_head_held_for_a_client_gone_meanwhile_is_dropped() -> None:
    assert _run(lambda t: t.write(HEAD), closing=True) == []
