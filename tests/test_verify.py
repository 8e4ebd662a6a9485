"""`tradelog verify`: exit 0 when the log, the streams and both projections agree; exit 1
naming what differs (a hand-altered hash or snapshot, a stream short of entries);
lagging projections are "behind", not different; --repair levels and rebuilds."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis

from eventlog import Writer
from eventlog.keys import Keys
from eventlog.settings import Settings
from projections import verify_pass
from projections.checkpoint import read_checkpoint, write_checkpoint
from projections.snapshots import snapshot_path
from projections.tags import ATTR
from projections.verify import verify
from tests.test_file_projection import catch_up
from tests.test_replay import (
    ACCOUNTS,
    FRIENDS,
    cli,
    fill,
    project_redis,
)
from tools import cmd_verify

MakeSettings = Callable[..., Settings]


@pytest.fixture
def rs(make_settings: MakeSettings, redis_url: str) -> Settings:
    """A data dir whose log, streams and both projections all agree."""
    s = make_settings(redis_url=redis_url, fsync="off", redis_timeout_ms=5000)
    fill(s, rounds=80)
    catch_up(s)
    with redis.Redis.from_url(redis_url) as client:
        project_redis(s, client)
    return s


def run_verify(s: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    done = cli(s, "verify", "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, orjson.loads(done.stdout)


def different(report: dict[str, Any], projection: str) -> dict[str, dict[str, Any]]:
    return {f["account"]: f for f in report["projections"][projection]["different"]}


def test_a_clean_state_verifies(rs: Settings) -> None:
    code, report = run_verify(rs, "--workers", "3")  # partitions split over 3 processes
    assert code == 0 and report["ok"]
    assert all(s["ok"] for s in report["streams"]) and len(report["streams"]) == rs.partitions
    for name in ("file", "redis"):
        assert report["projections"][name] == {
            "agree": len(ACCOUNTS),
            "different": [],
            "behind": [],
        }
    human = cli(rs, "verify")
    assert human.returncode == 0 and human.stdout.rstrip().endswith("verify: OK")


def test_a_hand_altered_meta_hash_is_named(rs: Settings, redis_client: redis.Redis) -> None:
    account = ACCOUNTS[4]
    redis_client.hset(Keys(rs.key_prefix).meta(account), "account_username", "mallory")
    code, report = run_verify(rs)
    assert code == 1 and not report["ok"]
    [finding] = different(report, "redis").values()
    assert finding["account"] == account and finding["keys"] == ["account_username"]
    assert finding["log_version"] == finding["projection_version"]
    assert different(report, "file") == {}
    human = cli(rs, "verify")
    assert human.returncode == 1 and f"DIFFERENT {account}" in human.stdout
    assert "keys differ: account_username" in human.stdout


def test_a_hand_stored_value_that_is_not_json_is_named(
    rs: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rs.key_prefix)
    account = ACCOUNTS[3]
    json_fields = orjson.loads(redis_client.hget(keys.meta(account), "_json") or b"[]")
    field = next(f for f in json_fields if f not in ("version", "trade_offers", "negotiations"))
    redis_client.hset(keys.meta(account), field, "bob")  # JSON-encoded there: not JSON now
    code, report = run_verify(rs)
    assert code == 1 and not report["ok"]
    assert account in different(report, "redis")
    human = cli(rs, "verify")
    assert human.returncode == 1 and f"DIFFERENT {account}" in human.stdout
    assert "Traceback" not in human.stderr
    stats = cli(rs, "stats", "--phase", "2")
    assert "Traceback" not in stats.stderr and stats.returncode == 2
    assert "is not JSON" in stats.stderr


def test_a_meta_hash_whose_field_order_drops_the_version_is_named_and_repaired(
    rs: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(rs.key_prefix)
    account = ACCOUNTS[5]
    order = orjson.loads(redis_client.hget(keys.meta(account), "_order") or b"[]")
    redis_client.hset(
        keys.meta(account), "_order", orjson.dumps([k for k in order if k != "version"])
    )
    code, report = run_verify(rs)
    assert code == 1 and account in different(report, "redis")
    assert "no version" in different(report, "redis")[account]["detail"]
    repaired = cli(rs, "verify", "--repair")
    assert "Traceback" not in repaired.stderr
    code, report = run_verify(rs)
    assert code == 0 and report["ok"]


def test_a_hand_altered_friend_hash_is_named(rs: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rs.key_prefix)
    account, friend = next(
        (a, f.decode())
        for a in ACCOUNTS
        for f in sorted(redis_client.smembers(keys.friends_index(a)))
    )
    redis_client.hset(keys.friend(account, friend), "state", "hacked")
    code, report = run_verify(rs)
    assert code == 1
    assert different(report, "redis")[account]["keys"] == ["negotiations"]


def test_a_hand_altered_accounts_set_is_named(rs: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rs.key_prefix)
    dropped, stranger = ACCOUNTS[2], "76561199027699999"
    redis_client.srem(keys.accounts(), dropped)
    redis_client.sadd(keys.accounts(), stranger)
    code, report = run_verify(rs)
    assert code == 1 and not report["ok"]
    found = different(report, "redis")
    assert set(found) == {dropped, stranger}
    assert found[dropped]["kind"] == "different"
    assert found[dropped]["detail"] == f"not in {keys.accounts()}"
    assert found[stranger]["kind"] == "extra"
    assert found[stranger]["detail"] == f"in {keys.accounts()} with no document"
    assert different(report, "file") == {}
    assert run_verify(rs, "--repair")[0] == 0  # rebuilt: each listed as its document says
    code, report = run_verify(rs)
    assert code == 0 and report["ok"]
    assert redis_client.sismember(keys.accounts(), dropped)
    assert not redis_client.sismember(keys.accounts(), stranger)


def test_an_account_projected_while_verify_reads_the_accounts_set_agrees(
    rs: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first look at Redis SCANs the documents, then reads the accounts set: a live
    projector that adds an account in between must not make a finding of it."""
    new = "76561199027699991"
    with Writer(rs) as w:
        data = {"friend_steam_id": "76561198123456789", "negotiation": {"state": "x"}}
        w.append(new, "FriendNegotiationUpserted", data)
    catch_up(rs)
    real = verify_pass._redis_state

    def racing(client: redis.Redis, keys: Keys) -> Any:
        real_smembers = client.smembers

        def smembers(name: str) -> Any:
            with redis.Redis.from_url(rs.redis_url) as other:
                project_redis(rs, other)
            return real_smembers(name)

        monkeypatch.setattr(client, "smembers", smembers)
        return real(client, keys)

    monkeypatch.setattr(verify_pass, "_redis_state", racing)
    report = verify(rs, workers=1)
    assert [(f.account, f.kind, f.detail) for f in report.findings if f.kind != "behind"] == []


def test_a_hand_altered_snapshot_is_named(rs: Settings) -> None:
    account = ACCOUNTS[5]
    path = snapshot_path(rs, account)
    doc = orjson.loads(path.read_bytes())
    doc["account_username"] = "mallory"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    code, report = run_verify(rs)
    assert code == 1
    assert different(report, "file")[account]["keys"] == ["account_username"]
    assert different(report, "redis") == {}
    path.write_bytes(b"{ not json")  # damaged, not just different
    code, report = run_verify(rs)
    assert code == 1 and "unreadable snapshot" in different(report, "file")[account]["detail"]


def test_a_stream_missing_its_last_entries_is_named(
    rs: Settings, redis_client: redis.Redis
) -> None:
    stream = Keys(rs.key_prefix).log(1)
    last = redis_client.xrevrange(stream, count=3)
    redis_client.xdel(stream, *[entry_id for entry_id, _ in last])
    code, report = run_verify(rs)
    assert code == 1
    [bad] = [s for s in report["streams"] if not s["ok"]]
    assert bad["partition"] == 1 and bad["missing_tail"] == 3 and bad["first_divergence"] is None
    assert bad["stream_end"] == bad["file_end"] - 3
    human = cli(rs, "verify")
    assert "p1: the stream ends at" in human.stdout and "3 entries missing" in human.stdout


def test_a_stream_missing_an_entry_in_the_middle_diverges_there(
    rs: Settings, redis_client: redis.Redis
) -> None:
    stream = Keys(rs.key_prefix).log(1)  # the busiest partition of these accounts
    assert redis_client.xlen(stream) > 10
    redis_client.xdel(stream, "0-6")  # the entry of offset 5
    code, report = run_verify(rs)
    assert code == 1
    [bad] = [s for s in report["streams"] if not s["ok"]]
    assert bad["first_divergence"]["offset"] == 5
    assert bad["first_divergence"]["why"] == "the stream has no entry at this offset"
    fixed, after = run_verify(rs, "--repair")
    assert fixed == 0 and after["ok"], after
    assert after["repair"]["streams"] == {"1": f"cut {bad['stream_end'] - 6} entries from offset 5"}


def test_repair_fixes_streams_and_projections(rs: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(rs.key_prefix)
    stream = keys.log(0)
    redis_client.xdel(stream, *[i for i, _ in redis_client.xrevrange(stream, count=4)])
    redis_client.hset(keys.meta(ACCOUNTS[6]), "version", 1)
    redis_client.delete(keys.offers(ACCOUNTS[7]))
    snapshot_path(rs, ACCOUNTS[8]).unlink()
    extra = "76561199999999999"  # a snapshot of an account the log never had
    snapshot_path(rs, extra).write_bytes(snapshot_path(rs, ACCOUNTS[9]).read_bytes())
    code, report = run_verify(rs)
    assert code == 1
    assert set(different(report, "redis")) == {ACCOUNTS[6], ACCOUNTS[7]}
    assert {a: f["kind"] for a, f in different(report, "file").items()} == {
        ACCOUNTS[8]: "missing",
        extra: "extra",
    }
    code, report = run_verify(rs, "--repair")
    assert code == 0 and report["ok"], report
    assert report["repair"]["relayed"] == 4 and report["repair"]["errors"] == []
    assert not snapshot_path(rs, extra).exists()
    assert run_verify(rs)[0] == 0
    # The projectors go on from the repaired state.
    with Writer(rs) as writer:
        writer.append(ACCOUNTS[6], "FriendsRemoved", {"friend_steam_ids": FRIENDS})
        writer.append(ACCOUNTS[7], "TradeOfferUpserted", {"offer": {"trade_offer_id": "7"}})
    catch_up(rs)
    project_redis(rs, redis_client)
    assert run_verify(rs)[0] == 0


def test_a_lagging_projection_is_behind_not_different(
    rs: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """While its projector runs, what a projection lags it will apply."""
    monkeypatch.setattr(verify_pass, "_stopped", lambda *args: {})  # both projectors run
    with Writer(rs) as writer:
        for account in ACCOUNTS[:3]:
            writer.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": "9"}})
    report = verify(rs, workers=1).as_dict()
    assert report["ok"] and report["stopped"] == {}
    for name in ("file", "redis"):
        behind = report["projections"][name]["behind"]
        assert sorted(f["account"] for f in behind) == sorted(ACCOUNTS[:3])
        assert all(f["projection_version"] == f["log_version"] - 1 for f in behind)
    strict_report = verify(rs, strict=True, workers=1)
    strict = strict_report.as_dict()
    assert not strict["ok"] and len(strict["projections"]["file"]["different"]) == 3
    cmd_verify._print(strict_report, "")  # the text of it too (no projector is named stopped)
    text = capsys.readouterr().out
    assert "3 different, 0 behind" in text and "not running" not in text


def test_a_projection_behind_with_its_projector_stopped_fails(rs: Settings) -> None:
    """Nothing will bring it forward: an operator checking before a phase switch must not
    read "OK" (a phase-2 read would answer the empty documents it lacks)."""
    cp = read_checkpoint(rs)
    write_checkpoint(rs, replace(cp, heartbeat=1))  # its projector last beat long ago
    with Writer(rs) as writer:
        for account in ACCOUNTS[:3]:
            writer.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": "9"}})
    code, report = run_verify(rs)
    assert code == 1 and not report["ok"]
    assert set(report["stopped"]) == {"file", "redis"}  # (the Redis one said it stopped)
    for name in ("file", "redis"):
        lagging = report["projections"][name]["different"]
        assert sorted(f["account"] for f in lagging) == sorted(ACCOUNTS[:3])
        assert {f["kind"] for f in lagging} == {"behind"}
    text = cli(rs, "verify").stdout
    assert "the file projector is not running: the 3 behind stay behind" in text


def test_a_projector_that_passed_an_event_without_it_is_different(
    make_settings: MakeSettings,
) -> None:
    s = make_settings(fsync="off")
    fill(s, rounds=30)
    catch_up(s)
    account = ACCOUNTS[10]
    good = snapshot_path(s, account).read_bytes()
    with Writer(s) as writer:
        writer.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    catch_up(s)
    snapshot_path(s, account).write_bytes(good)  # the checkpoint is past its new event
    report = verify(s)
    assert not report.ok and report.skipped["streams"].startswith("Redis is disabled")
    [finding] = report.findings
    assert (finding.account, finding.kind) == (account, "different")
    assert finding.projection_version == finding.log_version - 1
    assert not report.unreachable  # disabled on purpose: nothing is missing from the proof
    human = cli(s, "verify")
    assert human.returncode == 1 and "streams: not checked: Redis is disabled" in human.stdout


def test_a_snapshots_tag_is_compared_by_its_scores(make_settings: MakeSettings) -> None:
    """Another zlib build compresses the same scores into other bytes: still OK. A tag
    lost (a copy without attributes) loses scores the document cannot give back."""
    s = make_settings(redis_url="", fsync="off")
    account = ACCOUNTS[0]
    with Writer(s) as writer:
        for oid in ("5", "7"):  # no updated_at: scored by their events' times
            writer.append(account, "TradeOfferUpserted", {"offer": {"trade_offer_id": oid}})
    catch_up(s)
    path = snapshot_path(s, account)
    tag = os.getxattr(path, ATTR)
    head, _, packed = tag.partition(b"\n")
    again = head + b"\n" + zlib.compress(zlib.decompress(packed), 1)
    assert again != tag
    os.setxattr(path, ATTR, again)
    assert verify(s).ok
    os.removexattr(path, ATTR)
    report = verify(s)
    assert not report.ok
    [finding] = report.as_dict()["projections"]["file"]["different"]
    assert finding["account"] == account and "(offer index scores)" in finding["keys"]


def test_verify_with_redis_unreachable_checks_the_files(make_settings: MakeSettings) -> None:
    from tests.conftest import free_port

    s = make_settings(fsync="off", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    fill(s, rounds=20)
    catch_up(s)
    report = verify(s)
    assert report.ok and report.agree == {"file": len(ACCOUNTS)}
    assert "unreachable" in report.skipped["streams"] and "unreachable" in report.skipped["redis"]
    # The files agree, but the streams and the Redis projection went unchecked: not a proof.
    assert report.unreachable and report.as_dict()["complete"] is False
    assert report.as_dict()["ok"] is False
    human = cli(s, "verify")
    assert human.returncode == 2 and "verify: INCOMPLETE" in human.stdout


def test_a_legacy_file_never_imported_fails_and_is_left_for_import(rs: Settings) -> None:
    """No projection of the log (which has no event of it), and the one copy of its
    account, which the API refuses to serve as new: verify names it, and --repair,
    which would delete it, leaves it to `import-legacy`."""
    legacy = snapshot_path(rs, "76561199999999998")
    content = b'{"account_steam_id": "76561199999999998", "trade_offers": []}'
    legacy.write_bytes(content)
    code, report = run_verify(rs)
    assert code == 1
    assert {a: f["kind"] for a, f in different(report, "file").items()} == {
        "76561199999999998": "unimported"
    }
    code, report = run_verify(rs, "--repair")
    assert code == 1 and "import-legacy" in report["repair"]["errors"][0]
    assert legacy.read_bytes() == content
