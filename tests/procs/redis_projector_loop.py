"""A Redis projector stepping forever in small batches, killed with SIGKILL by the fault test.

Usage: redis_projector_loop.py REDIS_URL DATA_DIR PARTITIONS PREFIX CONSUMER BATCH LEASE_MS CLAIM_MS

After every step that handled entries one line is printed and flushed: the
number handled. Small batches make a kill land mid-batch (between the scripts
and the XACK) as often as between batches.
"""

from __future__ import annotations

import sys

import redis

from eventlog.settings import load_settings
from projections.redis_projector import RedisProjector


def main() -> int:
    url, data_dir, partitions, prefix, consumer, batch, lease_ms, claim_ms = sys.argv[1:9]
    settings = load_settings(
        data_dir=data_dir, redis_url=url, partitions=int(partitions), key_prefix=prefix
    )
    client = redis.Redis.from_url(url)
    projector = RedisProjector(
        settings, client, consumer, lease_ms=int(lease_ms), claim_idle_ms=int(claim_ms)
    )
    out = sys.stdout
    print("ready", flush=True)
    while True:  # forever: the test ends this process with SIGKILL
        n = projector.step(int(batch))
        if n:
            out.write(f"{n}\n")
            out.flush()
        else:
            projector.idle(0.05)


if __name__ == "__main__":
    sys.exit(main())
