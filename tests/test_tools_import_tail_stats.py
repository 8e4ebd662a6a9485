"""import-legacy, tail and stats through the console script, on a file-only data dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from eventlog import Writer
from eventlog.segments import Cursor, partition_dir
from eventlog.settings import Settings
from tests.conftest import SAMPLES_DIR

SAMPLES = SAMPLES_DIR


def _tradelog(data: Path, *args: str, partitions: int = 4) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADELOG_DATA_DIR": str(data), "TRADELOG_REDIS_URL": ""}
    env["TRADELOG_PARTITIONS"] = str(partitions)
    env["TRADELOG_API_KEYS"] = "k"  # for `serve`
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )


def _events(data: Path) -> list[dict[str, object]]:
    out = []
    for p in range(4):
        cursor = Cursor(partition_dir(data / "log", p), p)
        events, _ = cursor.read()
        cursor.close()
        out.extend(e.to_dict() for e in events)
    return out


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    folder = tmp_path / "legacy"
    shutil.copytree(SAMPLES, folder)
    (folder / "76561199027699991.json").write_text("{not json")
    (folder / "76561199027699992.json").write_text('{"account_steam_id": "76561199027634480"}')
    (folder / "76561199027699993.json").write_text('{"trade_offers": {"a": 1}}')
    (folder / "12345.json").write_text("{}")
    return folder


def test_import_of_a_legacy_data_dir_takes_its_negotiations_folder(tmp_path: Path) -> None:
    old = tmp_path / "legacy-data"
    shutil.copytree(SAMPLES, old / "negotiations")
    data = tmp_path / "data"
    done = _tradelog(data, "import-legacy", str(old), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files_ok"] == len(list(SAMPLES.glob("*.json"))) > 0
    events = _events(data)
    assert {e["account"] for e in events} == {p.stem for p in SAMPLES.glob("*.json")}
    run_ids = {e["meta"]["request_id"] for e in events}  # type: ignore[index]
    assert len(run_ids) == 1 and next(iter(run_ids)).startswith("import-")
    # Progress where no bar can be drawn (stderr is a pipe here): plain lines, on stderr.
    n = len(events)
    assert f"importing: {n} of {n} (100%)" in done.stderr


def test_import_of_a_folder_without_legacy_files_says_so(tmp_path: Path) -> None:
    (tmp_path / "legacy" / "elsewhere").mkdir(parents=True)  # the files are a level deeper
    done = _tradelog(tmp_path / "data", "import-legacy", str(tmp_path / "legacy"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files_total"] == 0
    assert "warning: no .json files in" in done.stderr and "negotiations/" in done.stderr


def test_a_data_dir_shared_with_the_legacy_service_migrates(tmp_path: Path) -> None:
    """Both default to ./data: the legacy files lie in tradelog's snapshot folder. They
    are imported, then replaced by their snapshots (not taken for damaged ones); importing
    the folder again leaves the snapshots alone: each would replace its account with what
    the projector last wrote, undoing any write it had not projected yet."""
    data = tmp_path / "data"
    (data / "negotiations").mkdir(parents=True)
    for sample in SAMPLES.glob("*.json"):  # copied writable (the samples are read-only)
        (data / "negotiations" / sample.name).write_bytes(sample.read_bytes())
    first = _tradelog(data, "import-legacy", str(data), "--json")
    assert first.returncode == 0, first.stderr
    count = json.loads(first.stdout)["files_ok"]
    assert count == len(list(SAMPLES.glob("*.json")))
    projected = _tradelog(data, "project", "file", "--until-caught-up")
    assert projected.returncode == 0, projected.stderr
    assert f"applied {count}," in projected.stdout and "parked 0" in projected.stdout
    for sample in SAMPLES.glob("*.json"):
        snapshot = orjson.loads((data / "negotiations" / sample.name).read_bytes())
        assert snapshot["version"] == 1
        legacy = orjson.loads(sample.read_bytes())
        assert {k: snapshot[k] for k in legacy} == legacy
    length = len(_events(data))
    again = _tradelog(data, "import-legacy", str(data / "negotiations"), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["own_snapshots"], report["files_ok"], report["files_failed"]) == (count, 0, 0)
    assert len(_events(data)) == length


def test_import_reports_bad_files_imports_the_rest_and_twice_adds_nothing(
    tmp_path: Path, legacy: Path
) -> None:
    data = tmp_path / "data"
    first = _tradelog(data, "import-legacy", str(legacy), "--json")
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)
    assert report["files_total"] == 10
    assert report["files_ok"] == 6
    assert report["files_failed"] == 4
    assert set(report["errors"]) == {
        "76561199027699991.json",
        "76561199027699992.json",
        "76561199027699993.json",
        "12345.json",
    }
    assert "does not match" in report["errors"]["76561199027699992.json"]
    events = _events(data)
    assert len(events) == 6
    assert {e["type"] for e in events} == {"LegacyImported"}
    for e in events:
        sample = SAMPLES / f"{e['account']}.json"
        data_ = e["data"]
        assert isinstance(data_, dict)
        assert data_["document"] == json.loads(sample.read_text())
        assert len(data_["source"]["sha256"]) == 64

    again = _tradelog(data, "import-legacy", str(legacy), "--json")
    assert json.loads(again.stdout)["files_skipped"] == 6
    assert len(_events(data)) == 6

    changed = legacy / "76561199027674075.json"
    doc = json.loads(changed.read_text())
    doc["account_username"] = "renamed"
    changed.write_text(json.dumps(doc, indent=2))
    third = _tradelog(data, "import-legacy", str(legacy), "--json")
    assert json.loads(third.stdout)["files_ok"] == 1
    events = _events(data)
    assert len(events) == 7
    last = [e for e in events if e["account"] == "76561199027674075"][-1]
    assert last["version"] == 2


def test_a_file_nested_too_deep_is_reported_and_the_rest_imported(tmp_path: Path) -> None:
    """It stopped the whole import with a traceback (its commit batch failed to encode)."""
    folder = tmp_path / "legacy"
    shutil.copytree(SAMPLES, folder)
    (folder / "76561199027699994.json").write_text('{"x": ' + "[" * 300 + "]" * 300 + "}")
    data = tmp_path / "data"
    done = _tradelog(data, "import-legacy", str(folder), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["files_ok"], report["files_failed"]) == (6, 1)
    assert "deeper" in report["errors"]["76561199027699994.json"]
    assert len(_events(data)) == 6


def test_dry_run_appends_nothing_and_prints_the_summary(tmp_path: Path, legacy: Path) -> None:
    data = tmp_path / "data"
    out = _tradelog(data, "import-legacy", str(legacy), "--dry-run")
    assert out.returncode == 1
    assert "files:   10 total, 6 ok, 4 failed" in out.stdout
    assert "FAILED 76561199027699991.json" in out.stdout
    # Nothing at all: no log, no partition marker (which would fix P for the data dir).
    assert not data.exists() or not any(data.rglob("*")), sorted(data.rglob("*"))


def test_tail_filters_by_account_and_type(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _tradelog(data, "import-legacy", str(SAMPLES)).returncode == 0
    out = _tradelog(data, "tail", "--no-follow", "--json", "--from-start")
    lines = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 6
    one = _tradelog(
        data, "tail", "--no-follow", "--json", "--from-start", "--account", "76561199027634480"
    )
    assert [orjson.loads(x)["account"] for x in one.stdout.splitlines()] == ["76561199027634480"]
    none = _tradelog(data, "tail", "--no-follow", "--from-start", "--type", "FriendsRemoved")
    assert none.stdout.strip() == ""
    pretty = _tradelog(data, "tail", "--no-follow", "--from-start")
    assert "LegacyImported" in pretty.stdout
    backwards = _tradelog(data, "tail", "--no-follow", "-n", "-5")
    assert backwards.returncode == 2 and "-n/--lines: must be 0 or more" in backwards.stderr


def test_stats_counts_events_accounts_offers_friends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _tradelog(data, "import-legacy", str(SAMPLES)).returncode == 0
    assert _tradelog(data, "project", "file", "--until-caught-up").returncode == 0
    out = _tradelog(data, "stats", "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    docs = [json.loads(p.read_text()) for p in SAMPLES.glob("*.json")]
    assert stats["events"] == 6
    assert stats["events_by_type"] == {"LegacyImported": 6}
    assert stats["accounts"] == 6
    assert stats["trade_offers"] == sum(len(d.get("trade_offers") or []) for d in docs)
    assert stats["friends"] == sum(len(d.get("negotiations") or {}) for d in docs)
    assert stats["projectors"]["file"]["lag"] == 0


def test_stats_says_the_redis_lag_is_unknown_when_redis_does_not_answer(tmp_path: Path) -> None:
    from tests.conftest import free_port

    data = tmp_path / "data"
    assert _tradelog(data, "import-legacy", str(SAMPLES)).returncode == 0
    env = {**os.environ, "TRADELOG_DATA_DIR": str(data), "TRADELOG_PARTITIONS": "4"}
    env["TRADELOG_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens

    def stats(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tools.cli", "stats", *args]
        cwd = Path(__file__).resolve().parents[1]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=cwd)

    out = stats("--json")
    assert out.returncode == 0, out.stderr
    redis_side = json.loads(out.stdout)["projectors"]["redis"]
    assert redis_side["lag"] is None and redis_side["error"]  # unknown, not level
    table = stats()
    assert table.returncode == 0 and "unknown" in table.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["stats", "--json"],
        ["tail", "--no-follow"],
        ["relay", "--until-caught-up"],
        ["verify"],
        ["serve", "--port", "0"],
    ],
)
def test_a_data_dir_made_with_other_partitions_stops_every_command(
    tmp_path: Path, legacy: Path, command: list[str]
) -> None:
    data = tmp_path / "data"
    _tradelog(data, "import-legacy", str(legacy))
    done = _tradelog(data, *command, partitions=8)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TRADELOG_PARTITIONS is 8 but" in done.stderr
    assert "made with 4" in done.stderr


def test_a_damaged_partitions_marker_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "log").mkdir(parents=True)
    (data / "log" / "PARTITIONS").write_text("four\n")
    done = _tradelog(data, "stats")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PARTITIONS should hold a partition count, not 'four'" in done.stderr
    assert "Traceback" not in done.stderr


def test_tail_of_one_account_reads_past_a_read_of_others(tmp_path: Path) -> None:
    """The account's events are shown though more than one read (about 5,000 lines, in
    4 MiB chunks) of other accounts' come before them in its partition."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, redis_url="", partitions=1, fsync="off")
    other, account = "76561199027642399", "76561199027634480"
    with Writer(settings) as writer:
        pad = "x" * 1000  # 10,000 lines of 1 KB: three chunks
        offers = [{"offer": {"trade_offer_id": str(i), "note": pad}} for i in range(10_000)]
        waits = [writer.submit(writer.command(other, "TradeOfferUpserted", o)) for o in offers]
        for wait in waits:
            wait.result()
        writer.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    out = _tradelog(
        data, "tail", "--no-follow", "--json", "--from-start", "--account", account, partitions=1
    )
    assert out.returncode == 0, out.stderr
    assert [orjson.loads(x)["account"] for x in out.stdout.splitlines()] == [account]


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "table"])
def test_tail_into_a_reader_that_stops_early_exits_quietly(tmp_path: Path, form: list[str]) -> None:
    """`tradelog tail | head`: the closed pipe ends it without a traceback, whether
    `print` or rich writes."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, redis_url="", partitions=4)
    account = "76561199027634480"
    with Writer(settings) as writer:
        for i in range(3000):  # well over a pipe's 64 KiB of JSON lines
            writer.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": str(i)}})
    env = {**os.environ, "TRADELOG_DATA_DIR": str(data), "TRADELOG_REDIS_URL": ""}
    env["TRADELOG_PARTITIONS"] = "4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "tail", "--no-follow", "--from-start", *form],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()
    errors = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
