"""A writer process for the concurrency test: N appends to one account, then report.

Usage: append_many.py DATA_DIR REDIS_URL PARTITIONS ACCOUNT COUNT SEED

Builds its own Writer, prints `ready`, waits for one line on stdin (the start
signal, so every process appends at the same time), then appends COUNT
TradeOfferUpserted events in groups of 1-8 submitted together (so batches of
several sizes reach the group commit) and prints one JSON line per
acknowledged event: {"id", "version", "offset", "redis_written"}.
"""

from __future__ import annotations

import os
import random
import sys

import orjson

from eventlog import Writer, load_settings


def main() -> int:
    data_dir, redis_url, partitions, account, count, seed = sys.argv[1:7]
    rng = random.Random(int(seed))
    settings = load_settings(
        data_dir=data_dir, redis_url=redis_url, partitions=int(partitions), fsync="always"
    )
    out = sys.stdout.buffer
    with Writer(settings) as writer:
        out.write(b"ready\n")
        out.flush()
        sys.stdin.readline()
        done = 0
        n = int(count)
        while done < n:
            group = min(rng.randint(1, 8), n - done)
            futures = [
                writer.submit(
                    writer.command(
                        account,
                        "TradeOfferUpserted",
                        {"offer": {"trade_offer_id": str(os.getpid() * 100_000 + done + i)}},
                    )
                )
                for i in range(group)
            ]
            for fut in futures:
                r = fut.result()
                out.write(
                    orjson.dumps(
                        {
                            "id": r.event_id,
                            "version": r.version,
                            "offset": r.offset,
                            "redis_written": r.redis_written,
                        },
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )
            done += group
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
