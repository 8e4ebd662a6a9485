"""Settings: defaults < TOML file < environment < flags; bad values named; P fixed per data dir."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventlog._exceptions import PartitionMismatch, SettingsError
from eventlog.marker import check_partitions
from eventlog.settings import Settings, load_settings
from eventlog.writer import Writer

TRADELOG = Path(sys.executable).with_name("tradelog")  # the console script of this venv


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No TRADELOG_* variable of the calling shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("TRADELOG_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "tradelog.toml"
    path.write_text(
        'data_dir = "/srv/from-toml"\n'
        "partitions = 16\n"
        'fsync = "batch"\n'
        'key_prefix = "fromtoml"\n'
        "projection_wait_ms = 500\n"
    )
    return path


def test_defaults() -> None:
    s = load_settings()
    assert s.data_dir == Path("./data")
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.redis_enabled
    assert (s.phase, s.partitions, s.fsync) == (1, 8, "always")
    assert (s.key_prefix, s.projection_wait_ms, s.max_body_bytes) == ("negotiation", 2000, 16 << 20)
    assert (s.host, s.port, s.workers, s.api_keys) == ("127.0.0.1", 3001, 1, ())


def test_toml_over_defaults(toml: Path) -> None:
    s = load_settings(toml)
    assert s.data_dir == Path("/srv/from-toml")
    assert (s.partitions, s.fsync, s.key_prefix, s.projection_wait_ms) == (
        16,
        "batch",
        "fromtoml",
        500,
    )
    assert s.port == 3001  # not in the file: the default


def test_config_file_from_the_environment(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELOG_CONFIG", str(toml))
    assert load_settings().partitions == 16
    # An explicit --config wins over TRADELOG_CONFIG.
    other = toml.with_name("other.toml")
    other.write_text("partitions = 2\n")
    assert load_settings(other).partitions == 2
    # And a later load without any file forgets the previous one.
    monkeypatch.delenv("TRADELOG_CONFIG")
    assert load_settings().partitions == 8


def test_environment_over_toml(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELOG_PARTITIONS", "32")
    monkeypatch.setenv("TRADELOG_FSYNC", "off")
    monkeypatch.setenv("TRADELOG_REDIS_URL", "")
    monkeypatch.setenv("TRADELOG_API_KEYS", "k1, k2,,k3 ")
    s = load_settings(toml)
    assert (s.partitions, s.fsync) == (32, "off")
    assert s.key_prefix == "fromtoml"  # not in the environment: from the file
    assert not s.redis_enabled
    assert s.api_keys == ("k1", "k2", "k3")


def test_flags_over_environment(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELOG_PARTITIONS", "32")
    monkeypatch.setenv("TRADELOG_PHASE", "2")
    s = load_settings(toml, partitions=64, fsync="always", phase=None)
    assert (s.partitions, s.fsync) == (64, "always")
    assert s.phase == 2  # a flag not given (None) leaves the environment's value


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PARTITIONS", "many"),
        ("PARTITIONS", "0"),
        ("PARTITIONS", "1025"),
        ("PHASE", "4"),
        ("FSYNC", "sometimes"),
        ("PORT", "70000"),
        ("WORKERS", "0"),
        ("KEY_PREFIX", "has space"),
        ("PROJECTION_WAIT_MS", "-1"),
        ("MAX_BODY_BYTES", "10"),
        ("SEGMENT_BYTES", "100"),
        ("REDIS_URL", "foo://127.0.0.1"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("REDIS_URL", "redis://127.0.0.1:6379/abc"),
        ("DATA_DIR", ""),
        ("DATA_DIR", " "),
        ("HOST", ""),
    ],
)
def test_bad_environment_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(f"TRADELOG_{variable}", value)
    with pytest.raises(SettingsError, match=rf"^TRADELOG_{variable}:") as e:
        load_settings()
    assert "Value error" not in str(e.value)  # pydantic's wording, not ours


def test_bad_toml_and_flag_values_name_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('fsync = "never"\n')
    with pytest.raises(SettingsError, match=r"^TRADELOG_FSYNC:"):
        load_settings(bad)
    with pytest.raises(SettingsError, match=r"^TRADELOG_PARTITIONS:"):
        load_settings(partitions="x")
    with pytest.raises(SettingsError, match=r"^TRADELOG_PHASE:"):
        load_settings(phase=0)
    # TOML's booleans and floats are no counts (pydantic would take true as 1, fixing
    # the partition count at 1 for good, and 2.0 as 2).
    for line, name in (("partitions = true", "PARTITIONS"), ("port = false", "PORT"),
                       ("phase = 2.0", "PHASE"), ("workers = 1.5", "WORKERS")):  # fmt: skip
        typed = tmp_path / "typed.toml"
        typed.write_text(line + "\n")
        with pytest.raises(SettingsError, match=rf"^TRADELOG_{name}: must be a whole number"):
            load_settings(typed)
    broken = tmp_path / "broken.toml"
    broken.write_text("partitions = = 3\n")
    with pytest.raises(SettingsError, match=r"^TRADELOG_CONFIG") as e:
        load_settings(broken)
    assert str(broken) in str(e.value)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("partitons = 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'partitons'") as e:
        load_settings(unknown)
    assert str(e.value).startswith(f"TRADELOG_CONFIG: {unknown}")
    with pytest.raises(SettingsError, match=r"^TRADELOG_CONFIG: no such file"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(SettingsError, match=r"^TRADELOG_CONFIG: a directory, not a TOML file"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    "url", ["redis://:s3cret@127.0.0.1:port/0", "redis://bot:s3cret#1@host:6379/0"]
)
def test_a_redis_url_error_never_shows_the_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("TRADELOG_REDIS_URL", url)
    with pytest.raises(SettingsError, match=r"^TRADELOG_REDIS_URL: ") as e:
        load_settings()
    assert "s3cret" not in str(e.value)


def test_the_redis_url_shown_has_no_password() -> None:
    shown = load_settings(redis_url="redis://bot:s3cret@127.0.0.1:6390/2").redis_where
    assert shown == "redis://bot:***@127.0.0.1:6390/2"
    assert load_settings(redis_url="redis://127.0.0.1").redis_where == "redis://127.0.0.1"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1",
        "redis://:pw@127.0.0.1:6390/3",
        "rediss://h:1/",
        "unix:///r.sock",
        "redis://h:1/0/",
        "redis://h:1/0#frag",
        "unix:///r.sock?db=3",
    ],
)
def test_good_redis_urls_pass(url: str) -> None:
    assert load_settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("phase", ["2", "3"])
def test_phases_that_read_from_redis_need_it(monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    monkeypatch.setenv("TRADELOG_PHASE", phase)
    monkeypatch.setenv("TRADELOG_REDIS_URL", "")
    with pytest.raises(SettingsError, match=r"^TRADELOG_PHASE: .*TRADELOG_REDIS_URL is empty"):
        load_settings()
    assert load_settings(phase=1).phase == 1  # phase 1 runs file-only


def test_cli_stops_naming_the_bad_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOG_")}
    env["TRADELOG_FSYNC"] = "sometimes"
    proc = subprocess.run(
        [str(TRADELOG), "relay", "--until-caught-up", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "TRADELOG_FSYNC" in proc.stderr


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_cli_names_a_data_dir_it_cannot_use(tmp_path: Path, where: str) -> None:
    """A data dir that is a file (or lies under one) stops the command naming the
    setting, with no traceback."""
    afile = tmp_path / "afile"
    afile.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOG_")}
    env["TRADELOG_REDIS_URL"] = ""
    env["TRADELOG_DATA_DIR"] = str(afile if where == "a file" else afile / "data")
    for command in (["up", "--port", "1"], ["verify"]):
        proc = subprocess.run(
            [str(TRADELOG), *command], capture_output=True, text=True, env=env, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        assert "TRADELOG_DATA_DIR" in proc.stderr and "Traceback" not in proc.stderr


def test_partition_count_is_recorded_and_a_different_one_refused(
    make_settings: Callable[..., Any],
) -> None:
    four: Settings = make_settings(partitions=4)
    with Writer(four) as w:
        w.append("76561199027634480", "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    assert (four.log_dir / "PARTITIONS").read_text().strip() == "4"
    for other in (1, 8):
        with pytest.raises(
            PartitionMismatch, match=r"TRADELOG_PARTITIONS is .* made with 4: set .*=4 "
        ):
            Writer(make_settings(partitions=other))
    with Writer(make_settings(partitions=4)):  # the same count opens
        pass
    assert (four.log_dir / "PARTITIONS").read_text().strip() == "4"


def test_processes_starting_together_agree_on_the_partition_count(tmp_path: Path) -> None:
    """The first start's record is never seen half-written by a concurrent start."""
    for round_ in range(40):
        log_dir = tmp_path / f"log{round_}"
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def start(
            log_dir: Path = log_dir,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                check_partitions(log_dir, 4)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert (log_dir / "PARTITIONS").read_text() == "4\n"
        assert [p.name for p in log_dir.iterdir()] == ["PARTITIONS"]  # no temp file left


def test_toml_api_keys_drop_empty_ones(tmp_path: Path) -> None:
    """An empty key from a TOML list would let a request with an empty X-API-Key in."""
    path = tmp_path / "keys.toml"
    path.write_text('api_keys = ["", " k1 ", "  "]\n')
    assert load_settings(path).api_keys == ("k1",)
