"""`tradelog bench replay`: its generated log is a valid log (offsets, versions, payloads the
writer would accept), and the scenario reports the figures it promises."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import orjson
import pytest

from eventlog.commands import make_command
from eventlog.records import StoredEvent
from eventlog.settings import Settings
from projections.replay import Folded, fold_log, log_ends
from tests.test_replay import TRADELOG
from tools.bench.replay_log import SAVE_EVERY, generate_log

MakeSettings = Callable[..., Settings]


def test_the_generated_log_is_valid(make_settings: MakeSettings) -> None:
    s = make_settings()
    generate_log(s.log_dir, s.partitions, 3000, accounts=50)
    assert sum(log_ends(s).values()) == 3000
    seen: list[tuple[str, str, int]] = []

    def check(p: int, events: list[StoredEvent]) -> None:
        for event in events:
            assert event.partition == p
            make_command(event.account, event.type, event.data, s.partitions)  # the input rules
            seen.append((event.type, event.account, event.version))

    folded = fold_log(s, log_ends(s), Folded(), observe=check)  # offsets checked by the cursor
    assert folded.poisoned == {} and len(folded.folds) == 50  # versions without gaps
    kinds = Counter(kind for kind, _, _ in seen)
    assert kinds["TradeOfferUpserted"] > 0.8 * 3000
    assert {"FriendNegotiationUpserted", "FriendsRemoved", "NegotiationsSaved"} <= set(kinds)


def test_a_steady_log_takes_the_accounts_in_turn_and_saves_each_on_a_fixed_period(
    make_settings: MakeSettings,
) -> None:
    s = make_settings()
    accounts, events = 8, 8 * 2 * SAVE_EVERY
    generate_log(s.log_dir, s.partitions, events, accounts=accounts, steady=True)
    seen: list[StoredEvent] = []
    folded = fold_log(s, log_ends(s), Folded(), observe=lambda _, batch: seen.extend(batch))
    assert folded.poisoned == {} and len(folded.folds) == accounts
    seen.sort(key=lambda e: e.ts)  # one millisecond apart: the order they were made in
    order = [e.account for e in seen]
    assert order == order[:accounts] * (events // accounts)
    saves: dict[str, list[int]] = {}
    for event in seen:
        if event.type == "NegotiationsSaved":
            saves.setdefault(event.account, []).append(event.version)
    assert len(saves) == accounts
    assert all(b - a == SAVE_EVERY for v in saves.values() for a, b in pairwise(v))
    # The accounts' turns spread over the period: their first saves are all different.
    assert len({v[0] for v in saves.values()}) == accounts


def test_bench_replay_reports_its_figures(tmp_path: Path) -> None:
    # Its own temp data dir and private redis-server: nothing from the environment is used.
    args = ["bench", "replay", "--json", "--events", "20000", "--replay-accounts", "200"]
    done = subprocess.run(
        [TRADELOG, *args], capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    figures = result["figures"]
    assert result["scenario"] == "replay" and figures["events"] == 20000
    assert {"file_seconds", "redis_seconds", "fold_seconds", "total_seconds"} <= set(figures)
    assert figures["events_per_s"] == pytest.approx(20000 / figures["total_seconds"], rel=0.01)
    assert not list(tmp_path.iterdir())
