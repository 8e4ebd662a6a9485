"""Proving that the log, the streams and the projections agree: what `tradelog verify` runs.

One pass over the file log (partitions split over worker processes, as replay does)
does three things per partition: it compares each event's id with the stream entry at
the same offset (the first divergence and the missing tail are reported), folds every
account with `projections.fold.apply`, and then compares each account's fold with the
file snapshot (its exact bytes, then the document's top-level keys) and with the Redis
reassembly (`redis_reader.read_folds`).

A projection that merely lags is "behind", not "different": it holds a lower version
and its projector's published position has not passed the account's next event.
A projection ahead of the fold is read on against the log (a projector may have
applied events appended during the pass) before it is called different.
`repair` levels the streams (the relay, after cutting a diverging stream back) and
rebuilds each account found different with `projections.replay.replay_accounts`.

This module is the public face; the work lives in `verify_pass` (the pass and its
workers), `verify_streams`, `verify_compare`, `verify_report` and `verify_repair`.
"""

from __future__ import annotations

from .verify_pass import verify
from .verify_repair import RepairReport, repair
from .verify_report import Finding, StreamCheck, VerifyReport

__all__ = ["Finding", "RepairReport", "StreamCheck", "VerifyReport", "repair", "verify"]
