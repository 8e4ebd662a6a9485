"""A file projector that SIGKILLs itself at its N-th file rename, mid-batch.

Usage: file_projector_crash.py DATA_DIR PARTITIONS KILL_AT BATCH

Runs the projector daemon (not in burst mode) with small batches. Renames are
the moments a batch changes the disk (snapshot after snapshot, then the
checkpoint), so dying just before or just after the N-th one (odd N: before,
even N: after) lands between a batch's snapshots, between its snapshots and
its checkpoint, or right after it, with temp files left behind. A kill from a
writer thread and one from the main thread both stop the whole process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from eventlog import load_settings
from projections.daemon import run
from projections.file_projector import FileProjector


def main() -> int:
    data_dir, partitions, kill_at, batch = sys.argv[1:5]
    settings = load_settings(data_dir=data_dir, redis_url="", partitions=int(partitions))
    target = int(kill_at)
    seen = 0
    lock = threading.Lock()
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        nonlocal seen
        with lock:
            seen += 1
            n = seen
        if n == target and target % 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
        if n == target:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]
    projector = FileProjector(settings)
    print("ready", flush=True)
    run(projector, threading.Event(), batch=int(batch), idle_s=0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
