"""A writer in a tight append loop, killed with SIGKILL by the crash test.

Usage: append_loop.py DATA_DIR PARTITIONS THREADS PAYLOAD_BYTES ACCOUNT [ACCOUNT ...]

THREADS threads append forever (fsync=always), round-robin over the accounts,
each event carrying PAYLOAD_BYTES of filler so group commits write large
blocks. After every acknowledged append one line is printed and flushed:
`<event id> <partition> <offset> <account> <version>`. Nothing is printed
before an append has returned, so every printed id is an acknowledged one.
"""

from __future__ import annotations

import itertools
import sys
import threading

from eventlog import Writer, load_settings


def main() -> int:
    data_dir, partitions, threads, payload = sys.argv[1:5]
    accounts = sys.argv[5:]
    settings = load_settings(
        data_dir=data_dir, redis_url="", partitions=int(partitions), fsync="always"
    )
    writer = Writer(settings)
    out = sys.stdout.buffer
    out_lock = threading.Lock()
    filler = "x" * int(payload)
    counter = itertools.count()

    def loop() -> None:
        while True:
            n = next(counter)
            account = accounts[n % len(accounts)]
            r = writer.append(
                account,
                "FriendNegotiationUpserted",
                {
                    "friend_steam_id": "76561198000000001",
                    "negotiation": {"state": "awaiting_reply", "n": n, "filler": filler},
                },
            )
            line = f"{r.event_id} {r.partition} {r.offset} {r.account} {r.version}\n".encode()
            with out_lock:
                out.write(line)
                out.flush()

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(int(threads))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()  # forever: the test ends this process with SIGKILL
    return 0


if __name__ == "__main__":
    sys.exit(main())
