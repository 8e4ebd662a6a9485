"""The run's environment as a scenario sees it: settings, Redis, key names, progress.

The harness (`tools.bench.run`) resolves where the run works before calling a
scenario: `args.bench_data_dir` (a temp dir unless `--data-dir`),
`args.bench_redis_url` (a private redis-server unless `--redis-url`) and
`args.bench_key_prefix`. Only those flags count, never `TRADELOG_DATA_DIR` or
`TRADELOG_REDIS_URL` from the environment: a bench must not append to the live
log or touch the shared Redis because a shell happened to export them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import redis
from rich.console import Console

from eventlog.settings import Settings

from ..cli import settings_from

__all__ = ["BenchContext", "status"]

_err = Console(stderr=True, highlight=False)


def status(message: str) -> None:
    """Progress, on stderr: stdout carries only the result (one JSON object with --json)."""
    _err.print(f"[dim]bench:[/dim] {message}")


@dataclass(frozen=True)
class BenchContext:
    settings: Settings
    default_seconds: float | None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **defaults: Any) -> BenchContext:
        """Settings for the run; `defaults` apply unless the matching flag was given.

        A scenario passes what defines it (e.g. fsync="always"); a flag such as
        `--fsync off` still wins, so the same scenario can be run to compare.
        """
        extra = {k: v for k, v in defaults.items() if getattr(args, f"setting_{k}", None) is None}
        settings = settings_from(
            args,
            **extra,
            data_dir=args.bench_data_dir,
            redis_url=args.bench_redis_url,
            key_prefix=args.bench_key_prefix,
        )
        return cls(settings, args.duration)

    def duration(self, default: float) -> float:
        """The timed part's length: `--duration`, else the scenario's default."""
        return self.default_seconds if self.default_seconds is not None else default

    def redis(self) -> redis.Redis:
        """A client for the bench's Redis, with time-outs long enough for big pipelines."""
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=30)

    def key(self, name: str) -> str:
        """A scratch key for baselines, under the run's prefix (cleaned up with it)."""
        return f"{self.settings.key_prefix}:bench:{name}"
