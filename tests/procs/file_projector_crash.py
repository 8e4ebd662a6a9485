"""A file projector that SIGKILLs itself at its N-th file rename or exchange, mid-batch.

Usage: file_projector_crash.py DATA_DIR PARTITIONS KILL_AT BATCH

Runs the projector daemon (not in burst mode) with small batches. Renames and
a spare's exchanges are the moments a batch changes the disk (snapshot after
snapshot, then the checkpoint), so dying just before or just after the N-th
one (odd N: before, even N: after) lands between a batch's snapshots, between
its snapshots and its checkpoint, or right after it, with temp files left behind. A kill from a
writer thread and one from the main thread both stop the whole process. When N
is a multiple of 3, spares are reused at once: the kill lands between a spare's
overwrite and its exchange.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from eventlog import load_settings
from projections import atomic, fscalls
from projections.daemon import run
from projections.file_projector import FileProjector


def main() -> int:
    data_dir, partitions, kill_at, batch = sys.argv[1:5]
    settings = load_settings(data_dir=data_dir, redis_url="", partitions=int(partitions))
    target = int(kill_at)
    seen = 0
    lock = threading.Lock()

    def dying(real: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def put(src: Any, dst: Any) -> None:
            nonlocal seen
            with lock:
                seen += 1
                n = seen
            if n == target and target % 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
            if n == target:
                os.kill(os.getpid(), signal.SIGKILL)

        return put

    os.replace = dying(os.replace)  # type: ignore[assignment]
    fscalls.exchange = dying(fscalls.exchange)
    if target % 3 == 0:  # spares overwritten as soon as they are out of place
        atomic.SPARE_REST_S = 0.0
    projector = FileProjector(settings)
    print("ready", flush=True)
    run(projector, threading.Event(), batch=int(batch), idle_s=0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
