"""Rebuilding projections from the file log, the truth: what `tradelog replay` runs.

A full rebuild is one pass over the log: every partition is folded in memory with
`projections.fold.apply` from empty (nothing skipped), then each account is written
once: its snapshot file (a thread pool: fsync releases the GIL) and/or its Redis
keys (whole-account `save_document` calls, pipelined in big batches). Partitions
are independent (an account lives in one), so on a multi-core machine they are
split over worker processes, each folding and writing its own accounts. Last, the
projector's position is set to the log end the pass stopped at (measured before
it started), so the daemon goes on from there without applying anything again.

An account whose events do not fold (a poison event, a gap in the log) is parked
as the daemons park it: its last good state is written and the failing event and
every later one wait in its dead-letter record. Everything parked before is
cleared: it is rebuilt from the log.

`replay_accounts` rebuilds chosen accounts only (`--account`, and verify's
repair); `replay_file_live` builds a fresh copy of the file projection beside the
live one and switches reads to it atomically.

This module is the public face; the work lives in one module per concept:
`replay_fold` (folding the log), `replay_jobs` (worker processes, progress),
`replay_files` and `replay_redis` (writing each projection), `replay_pass` (the
rebuild pass and its report), `replay_offline`, `replay_accounts`,
`replay_live_file` with `replay_switch`, and `replay_live_redis`.
"""

from __future__ import annotations

from eventlog.log_end import log_ends

from .replay_accounts import AccountResult, replay_accounts
from .replay_fold import Folded, Poisoned, Tick, fold_log, read_log
from .replay_jobs import Meter, run_jobs, split_partitions
from .replay_live_file import replay_file_live
from .replay_offline import rebuild
from .replay_pass import TARGETS, ReplayReport
from .replay_redis import redis_client

__all__ = [
    "TARGETS",
    "AccountResult",
    "Folded",
    "Meter",
    "Poisoned",
    "ReplayReport",
    "Tick",
    "fold_log",
    "log_ends",
    "read_log",
    "rebuild",
    "redis_client",
    "replay_accounts",
    "replay_file_live",
    "run_jobs",
    "split_partitions",
]
