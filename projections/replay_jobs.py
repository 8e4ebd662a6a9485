"""Running per-partition jobs in worker processes, and reporting their progress.

Partitions are independent (an account lives in one), so replay and verify both
split them over worker processes, each folding its own. This module holds what
they share: grouping partitions by event count, spawning the workers, bringing
their progress back to the caller's `Meter`, and their errors back as errors.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from eventlog import _exceptions as errors
from eventlog._exceptions import LogUnavailable, RedisUnavailable, SettingsError, TradelogError

from .replay_fold import Tick

__all__ = ["Meter", "run_jobs", "split_partitions"]


class Meter(Protocol):
    """Where long work reports its progress (the CLI's bar)."""

    def start(self, total: int, what: str) -> None: ...

    def advance(self, n: int) -> None: ...


_shared: Any = None  # the worker's events counter (a multiprocessing Value)


def _init_worker(counter: Any) -> None:
    global _shared
    _shared = counter
    gc.disable()  # a worker only folds and writes: acyclic objects (replay_fold._quiet_gc)


def _tick_shared(n: int) -> None:
    with _shared.get_lock():
        _shared.value += n


def _in_worker(fn: Callable[[Any, Tick | None], Any], job: Any) -> Any:
    try:
        return fn(job, _tick_shared)
    except TradelogError as e:
        # Not every error type pickles back (custom __init__ arguments): send its name.
        return _Failed(type(e).__name__, str(e))


@dataclass(frozen=True, slots=True)
class _Failed:
    kind: str
    message: str

    def raise_it(self) -> None:
        kind = getattr(errors, self.kind, None)
        simple = (LogUnavailable, RedisUnavailable, errors.SnapshotUnavailable, SettingsError)
        if isinstance(kind, type) and issubclass(kind, simple):
            raise kind(self.message)
        raise TradelogError(self.message)


def split_partitions(ends: dict[int, int], workers: int | None) -> list[dict[int, int]]:
    """Partitions spread over at most `workers` groups of about equal event counts."""
    # Twice the cores: while one worker waits on fsync or Redis, another folds. A small
    # log is folded here: starting worker processes would cost more than folding it.
    count = workers or (min(2 * (os.cpu_count() or 1), 8) if sum(ends.values()) >= 50_000 else 1)
    groups: list[dict[int, int]] = [{} for _ in range(max(1, min(count, len(ends))))]
    loads = [0] * len(groups)
    for p, end in sorted(ends.items(), key=lambda item: -item[1]):
        i = loads.index(min(loads))
        groups[i][p] = end
        loads[i] += end
    return [g for g in groups if g] or [{}]


def run_jobs(fn: Callable[[Any, Tick | None], Any], jobs: Sequence[Any], tick: Tick | None) -> Any:
    """fn(job, tick) for each job: in this process for one job, else one process each.

    Workers are spawned (not forked: the caller may run threads, e.g. a progress bar)
    and report progress through a shared counter, polled here for the caller's tick.
    """
    if len(jobs) == 1:
        results = [fn(jobs[0], tick)]
    else:
        try:
            results = _spawn(fn, jobs, tick)
        except BrokenProcessPool as e:
            raise TradelogError(f"a replay worker process died: {e}") from e
    for result in results:
        if isinstance(result, _Failed):
            result.raise_it()
    return results


def _spawn(fn: Callable[[Any, Tick | None], Any], jobs: Sequence[Any], tick: Tick | None) -> Any:
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    with ProcessPoolExecutor(
        len(jobs), mp_context=ctx, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(_in_worker, fn, job) for job in jobs]
        seen = 0
        while True:
            _, pending = wait(futures, timeout=0.2)  # the bar's refresh, not a sync
            now = counter.value
            if tick is not None and now > seen:
                tick(now - seen)
            seen = now
            if not pending:
                break
        return [f.result() for f in futures]
