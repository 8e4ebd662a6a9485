"""One process of the Redis projector's group, for `bench project`.

Run as `python -m tools.bench.project_share I N BATCH` with the settings in
the environment: it builds share I of N as `tradelog project redis` does, says
`ready`, waits for a line on stdin (so only the catch-up is timed, not the
start), catches up, and prints `{"events", "cpu"}` (its CPU seconds) as JSON.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import orjson


def main() -> None:
    from eventlog.settings import load_settings
    from projections.daemon import run

    from ..cmd_project import build

    i, n, batch = (int(a) for a in sys.argv[1:4])
    logging.getLogger("tradelog").setLevel(logging.WARNING)
    projector = build("redis", load_settings(), (i, n))
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    events = run(projector, threading.Event(), until_caught_up=True, batch=batch)
    cpu = time.process_time() - cpu
    print(orjson.dumps({"events": events, "cpu": cpu}).decode(), flush=True)


if __name__ == "__main__":
    main()
