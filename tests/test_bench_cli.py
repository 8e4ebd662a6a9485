"""`tradelog bench` with no scenario runs each in turn, each on its own data dir."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import orjson
import pytest

import tools.bench as bench


def test_bench_without_a_scenario_runs_every_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seen: list[tuple[str, Path]] = []

    def fake(name: str) -> types.ModuleType:
        module = types.ModuleType(f"fake_{name}")

        def run(args: argparse.Namespace) -> dict[str, Any]:
            seen.append((name, args.bench_data_dir))
            return {"figures": {f"{name}_per_s": 1}, "ratios": {"r": 0.5}, "notes": ["n"]}

        module.run = run  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return module

    monkeypatch.setattr(bench, "SCENARIOS", {n: fake(n).__name__ for n in ("one", "two")})
    args = argparse.Namespace(
        scenario=None,
        json=True,
        setting_redis_url="redis://127.0.0.1:1/0",  # given: no private server is started
        setting_key_prefix="bench-test",  # given: nothing is removed from it afterwards
        setting_data_dir=None,  # a temp dir per scenario
    )
    assert bench.run(args) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"scenario": "one", "figures": {"one_per_s": 1}, "ratios": {"r": 0.5}},
        {"scenario": "two", "figures": {"two_per_s": 1}, "ratios": {"r": 0.5}},
    ]
    assert [name for name, _ in seen] == ["one", "two"]
    assert seen[0][1] != seen[1][1] and not any(d.exists() for _, d in seen)


def test_a_part_of_http_runs_alone_under_its_own_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[str] = []
    module = types.ModuleType("fake_http")

    def run(args: argparse.Namespace) -> dict[str, Any]:
        asked.append(args.http_only)
        return {"figures": {"sustained_events_per_s": 1}, "ratios": {}}

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(bench, "SCENARIOS", {"http": module.__name__})
    args = argparse.Namespace(
        scenario="sustained",
        json=True,
        setting_redis_url="redis://127.0.0.1:1/0",
        setting_key_prefix="bench-test",
        setting_data_dir=None,
    )
    assert bench.run(args) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out == {"scenario": "sustained", "figures": {"sustained_events_per_s": 1}, "ratios": {}}
    assert asked == ["sustained"]


@pytest.mark.parametrize("name", ["upsert80", "latency", "read", "sustained"])
def test_the_cli_takes_designs_scenario_names(name: str) -> None:
    from tools.cli import build_parser

    args = build_parser().parse_args(["bench", name, "--json"])
    assert args.scenario == name
