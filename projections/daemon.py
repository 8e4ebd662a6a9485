"""The projector daemon loop, shared by the file and Redis projectors.

A projector applies what is available in `step()`; the loop calls it until
stopped, sleeping on a wake-up (a bell ring or the projector's own blocking
read) when there is nothing to do, publishing a heartbeat, and finishing the
current batch before a SIGTERM stops it. `--until-caught-up` (burst mode)
returns as soon as a step finds nothing to apply.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from typing import Protocol

__all__ = ["Projector", "install_stop_signals", "run"]

log = logging.getLogger("tradelog.projector")

HEARTBEAT_S = 1.0


class Projector(Protocol):
    name: str

    def step(self, max_events: int) -> int:
        """Apply up to `max_events` available events; return how many were applied."""
        ...

    def idle(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for new events (returns early when some come)."""
        ...

    def heartbeat(self) -> None:
        """Publish that this projector is alive, with its positions."""
        ...

    def close(self) -> None: ...


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`: the current batch finishes and is checkpointed.

    The handler takes no lock. Setting the Event takes its lock, and a signal that
    arrives while another's handler (or the main thread's wait) holds it would wait
    for it forever; a stop brings bursts (the terminal's SIGINT, the group parent's,
    a supervisor's SIGTERM). So the handler queues the signal (SimpleQueue.put is
    reentrant) and a thread of its own sets `stop`."""
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def relay() -> None:
        signals.get()
        stop.set()

    threading.Thread(target=relay, name="tradelog-stop", daemon=True).start()

    def handler(signum: int, frame: object) -> None:
        signals.put(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(
    projector: Projector,
    stop: threading.Event,
    *,
    until_caught_up: bool = False,
    batch: int = 5000,
    idle_s: float = 0.5,
) -> int:
    """Drive `projector` until `stop` is set (or, in burst mode, until caught up)."""
    applied = 0
    last_beat = 0.0
    try:
        while not stop.is_set():
            n = projector.step(batch)
            applied += n
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_S or (n == 0 and until_caught_up):
                projector.heartbeat()
                last_beat = now
            if n == 0:
                if until_caught_up:
                    break
                projector.idle(idle_s)
    finally:
        projector.close()
    log.info("%s projector stopped after applying %d events", projector.name, applied)
    return applied
