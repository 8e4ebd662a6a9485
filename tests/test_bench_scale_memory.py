"""`tradelog bench scale` and `bench memory`: on tiny logs each reports exactly the figures
and ratios it promises, all positive, and leaves nothing behind; the log they are built on
holds the same events in the file and in the streams."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from eventlog.keys import Keys
from eventlog.log_end import log_ends
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from tests.test_replay import TRADELOG
from tools.bench.biglog import drop_keys, make_log

MakeSettings = Callable[..., Settings]


def bench(cwd: Path, *args: str) -> dict[str, Any]:
    # Its own temp data dir and private redis-server: nothing from the environment is used.
    done = subprocess.run(
        [TRADELOG, "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    assert not list(cwd.iterdir())
    return result


def assert_reports(
    result: dict[str, Any], scenario: str, figures: set[str], ratios: set[str]
) -> None:
    assert set(result) == {"scenario", "figures", "ratios"}
    assert result["scenario"] == scenario
    assert set(result["figures"]) == figures
    assert set(result["ratios"]) == ratios
    for value in [*result["figures"].values(), *result["ratios"].values()]:
        assert isinstance(value, int | float) and value > 0


def test_bench_scale_reports_its_figures(tmp_path: Path) -> None:
    sizes = ["--scale-small-events", "300", "--scale-events", "2000", "--scale-accounts", "50"]
    result = bench(tmp_path, "scale", *sizes, "--scale-apply", "400", "--scale-rounds", "2")
    kinds = ("append", "file_apply", "redis_apply")
    assert_reports(
        result,
        "scale",
        {f"{kind}_per_s_{size}" for kind in kinds for size in ("10k", "1m")},
        {f"{kind}_1m_vs_10k" for kind in kinds},
    )


def test_bench_memory_reports_its_figures(tmp_path: Path) -> None:
    logs = ["--memory-small", "500", "--memory-large", "2000", "--memory-accounts", "20"]
    result = bench(tmp_path, "memory", *logs, "--memory-requests", "100")
    names, sizes = ("file", "redis"), ("small", "large")
    projectors = {f"{name}_projector_rss_mb_{size}" for name in names for size in sizes}
    assert_reports(
        result,
        "memory",
        {"api_worker_rss_mb", *projectors},
        {"file_projector_large_vs_small", "redis_projector_large_vs_small"},
    )


def test_the_big_log_holds_the_same_events_in_file_and_streams(
    make_settings: MakeSettings, redis_url: str
) -> None:
    s = make_settings(redis_url=redis_url)
    make_log(s, 3000, accounts=40)
    ends = log_ends(s)
    assert sum(ends.values()) == 3000
    client = redis.Redis.from_url(redis_url)
    stream = StreamLog(client, Keys(s.key_prefix))
    for p, end in ends.items():
        cursor = Cursor(partition_dir(s.log_dir, p), p)
        in_file, _ = cursor.read()
        cursor.close()
        assert [e.id for e in stream.read(p, 0, count=end + 1)] == [e.id for e in in_file]
    drop_keys(s)
    assert client.dbsize() == 0
    client.close()
