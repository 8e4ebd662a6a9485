"""Read-your-writes: wait, bounded and without polling, for the read projection.

Projectors ring the `progress` bell with their positions after every batch
(`{"projector": "file", "positions": {"<p>": next_offset}}`); this process
listens on its own bell through the event loop and wakes exactly the writes
whose event is now applied. Rings can be missed (a full socket queue), so a
wait that times out re-reads the projector's durable progress once before it
answers `projected: false`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import orjson

from eventlog.notify import PROGRESS, Bell

__all__ = ["ProgressWaiter"]

log = logging.getLogger("tradelog.api")

Positions = dict[int, int]


class ProgressWaiter:
    def __init__(self, run_dir: Path, projector: str, durable: Callable[[], Positions]) -> None:
        self.projector = projector
        self._durable = durable
        self.positions: Positions = {}
        self._waiting: dict[int, list[tuple[int, asyncio.Future[bool]]]] = {}
        self._bell: Bell | None = None
        self._run_dir = run_dir

    def start(self) -> None:
        self._bell = Bell(self._run_dir, PROGRESS)
        asyncio.get_running_loop().add_reader(self._bell.fileno(), self._on_ring)
        self.refresh()

    def close(self) -> None:
        if self._bell is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self._bell.fileno())
            self._bell.close()
            self._bell = None

    def refresh(self) -> None:
        """Take the projector's durable progress (start-up, or after a missed ring)."""
        try:
            self._advance(self._durable())
        except Exception as e:  # a projector that never ran has no progress yet
            log.debug("no durable progress for %s: %s", self.projector, e)

    def _on_ring(self) -> None:
        assert self._bell is not None
        for payload in self._bell.drain():
            try:
                msg = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(msg, dict) and msg.get("projector") == self.projector:
                positions = msg.get("positions") or {}
                self._advance({int(p): int(o) for p, o in positions.items()})

    def _advance(self, positions: Positions) -> None:
        for p, next_offset in positions.items():
            if next_offset <= self.positions.get(p, 0):
                continue
            self.positions[p] = next_offset
            waiting = self._waiting.get(p)
            if not waiting:
                continue
            still = []
            for offset, fut in waiting:
                if offset < next_offset:
                    if not fut.done():
                        fut.set_result(True)
                else:
                    still.append((offset, fut))
            self._waiting[p] = still

    def applied(self, partition: int, offset: int) -> bool:
        return offset < self.positions.get(partition, 0)

    async def wait(self, partition: int, offset: int, timeout_s: float) -> bool:
        """True once the projection has applied `offset` of `partition`, False on time-out."""
        if self.applied(partition, offset):
            return True
        if timeout_s <= 0:
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(partition, []).append((offset, fut))
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            self.refresh()
            return self.applied(partition, offset)
        finally:
            waiting = self._waiting.get(partition)
            if waiting:
                self._waiting[partition] = [w for w in waiting if w[1] is not fut]
