"""Poison events and version gaps park only their account: its later events wait in
order in a dead-letter record, every other account goes on, redelivery adds
nothing twice, and `reapply_parked` brings the account back once fixed."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import uuid_utils

import projections.file_parked as file_parked
import projections.file_projector as file_projector
from eventlog import Writer
from eventlog._exceptions import AccountParked, ProjectorBusy
from eventlog.records import StoredEvent, partition_of, utc_ts
from eventlog.segments import partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from projections.file_health import progress
from projections.file_parking import read_park, read_park_summary
from projections.file_projector import FileProjector, parked, reapply_parked
from projections.fold import Fold, apply, dumps, fold_all
from projections.replay_accounts import replay_accounts
from projections.snapshots import read_snapshot, snapshot_path
from projections.tags import ATTR
from projections.verify import verify
from tests.procs.api_harness import SAMPLES
from tests.test_file_projection import assert_matches_fold, catch_up, log_events, upsert
from tools.cmd_import import import_dir

SICK = "76561199027634480"
WELL = "76561199027642399"


def append_raw(s: Settings, account: str, kind: str, data: dict[str, Any], skip: int = 0) -> None:
    """Append a line the writer would never write, at the right offset; `skip` versions."""
    events = log_events(s)
    p = partition_of(account, s.partitions)
    offset = sum(1 for e in events if e.partition == p)
    version = sum(1 for e in events if e.account == account) + 1 + skip
    event = StoredEvent(
        str(uuid_utils.uuid7()),
        account,
        version,
        p,
        offset,
        kind,
        utc_ts(),
        data,
        {"source": "test"},
    )
    pdir = partition_dir(s.log_dir, p)
    with open(segment_path(pdir, segment_bases(pdir)[-1]), "ab") as f:
        f.write(event.to_line())


def append_both(s: Settings, start: int, count: int) -> None:
    with Writer(s) as writer:
        for i in range(start, start + count):
            for account in (SICK, WELL):
                writer.append(account, "TradeOfferUpserted", upsert(str(i % 4), state="Accepted"))


def fixed_apply(state: Fold | None, event: StoredEvent) -> Fold:
    """The fold "after the bug fix": the poison events now apply as no-ops."""
    if event.type == "Bogus" or event.data.get("offer", {}).get("trade_offer_id") == "abc":
        assert state is not None
        return Fold({**state.doc, "version": event.version}, state.scores)
    return apply(state, event)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("Bogus", {"what": 1}),  # an event type the fold does not know
        ("TradeOfferUpserted", {"offer": {"trade_offer_id": "abc"}}),  # the fold raises
    ],
)
def test_a_poison_event_parks_only_its_account(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    data: dict[str, Any],
) -> None:
    s = make_settings(partitions=1)  # both accounts share a partition: order is interleaved
    append_both(s, 0, 3)
    append_raw(s, SICK, kind, data)
    append_both(s, 3, 4)
    with caplog.at_level(logging.ERROR):
        first = catch_up(s, batch=3)
    assert "PARKED " + SICK in caplog.text
    assert (first.applied, first.parked_events) == (3 + 3 + 4, 5)
    [record] = parked(s)
    assert record["account"] == SICK and record["version"] == 4 and record["held"] == 3
    assert record["waiting"] == 5 and record["position"] == {"partition": 0, "offset": 6}
    events = log_events(s)
    good = fold_all(e for e in events if e.account == WELL or e.version < 4)
    for account in (SICK, WELL):
        snap = read_snapshot(s, account)
        assert snap is not None and dumps(snap.doc) == dumps(good[account].doc)
    assert progress(s)["lag_total"] == 0

    # More events wait behind it; a restart from scratch redelivers without doubling.
    append_both(s, 7, 2)
    (s.data_dir / "checkpoints" / "file.json").unlink()
    again = catch_up(s, batch=4)
    assert (again.applied, again.parked_events) == (2, 2)
    waiting = read_park(s, SICK)
    assert waiting is not None
    assert [e.version for e in waiting.events] == list(range(4, 4 + 5 + 2))
    assert read_park_summary(s, SICK) == waiting.summary()  # from the record's head alone
    assert read_park_summary(s, WELL) is None

    # Still broken: it stays parked, nothing applied; then fixed: it catches up.
    with pytest.raises(AccountParked, match=SICK):
        reapply_parked(s, SICK)
    assert read_park(s, SICK) is not None
    busy = FileProjector(s)
    try:
        with pytest.raises(ProjectorBusy):
            reapply_parked(s, SICK)
    finally:
        busy.close()
    monkeypatch.setattr(file_parked, "apply", fixed_apply)  # where reapply_parked looks it up
    monkeypatch.setattr(file_projector, "apply", fixed_apply)  # and where FileProjector does
    assert reapply_parked(s, SICK) == 7
    assert parked(s) == [] and reapply_parked(s, SICK) == 0
    snap = read_snapshot(s, SICK)
    assert snap is not None and snap.doc["version"] == 10
    later = catch_up(s)
    assert later.applied == 0 and later.parked_events == 0
    # Events after the repair go straight on.
    append_both(s, 9, 1)
    assert catch_up(s).applied == 2


def test_a_version_gap_parks_loudly_and_stays_parked(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    s = make_settings()
    append_both(s, 0, 2)
    append_raw(s, SICK, "FriendsRemoved", {"friend_steam_ids": []}, skip=1)
    append_both(s, 2, 2)
    with caplog.at_level(logging.ERROR):
        catch_up(s)
    gaps = [r for r in caplog.records if r.levelno == logging.ERROR and "version gap" in r.message]
    assert gaps and SICK in gaps[0].message
    [record] = parked(s)
    assert record["account"] == SICK and record["version"] == 4 and record["held"] == 2
    assert "projection holds 2, event is 4" in record["error"]
    assert_matches_fold(s, skip=frozenset({SICK}))
    # The log itself has the gap: re-applying cannot fill it.
    with pytest.raises(AccountParked, match="event is 4"):
        reapply_parked(s, SICK)


def test_a_rolled_back_snapshot_parks_and_reapply_fills_from_the_log(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    append_both(s, 0, 1)
    catch_up(s)
    path = snapshot_path(s, SICK)
    old, old_tag = path.read_bytes(), os.getxattr(path, ATTR)
    append_both(s, 1, 2)
    catch_up(s)
    path.write_bytes(old)  # e.g. a restored backup (copied with its attributes): version 1
    os.setxattr(path, ATTR, old_tag)
    append_both(s, 3, 1)
    catch_up(s)
    [record] = parked(s)
    assert (record["version"], record["held"]) == (4, 1)
    assert reapply_parked(s, SICK) == 3  # versions 2 and 3 from the log, then 4
    assert parked(s) == []
    assert_matches_fold(s)


def test_an_unreadable_snapshot_parks_its_account(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    append_both(s, 0, 1)
    catch_up(s)
    snapshot_path(s, SICK).write_bytes(b"{ damaged")
    append_both(s, 1, 1)
    catch_up(s)
    [record] = parked(s)
    assert record["account"] == SICK and "CorruptSnapshot" in record["error"]
    assert_matches_fold(s, skip=frozenset({SICK}))
    # The operator moves the damaged file away; re-applying rebuilds it from the log.
    shutil.move(snapshot_path(s, SICK), s.data_dir / "damaged.json")
    assert reapply_parked(s, SICK) == 2
    assert_matches_fold(s)
    assert orjson.loads(snapshot_path(s, SICK).read_bytes())["version"] == 2


def test_a_legacy_file_in_the_way_parks_its_account_until_imported(
    make_settings: Callable[..., Settings],
) -> None:
    """An event of an account whose snapshot path holds a legacy file the log never had
    (one that got past the API's check, or a write from elsewhere) would replace it:
    the account parks instead, the file stays, and once it is imported the parked events
    are re-applied with the import's document."""
    s = make_settings(partitions=1)
    sample = next(p for p in SAMPLES if p.stem not in (SICK, WELL))
    legacy, path = sample.read_bytes(), snapshot_path(s, sample.stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(legacy)
    with Writer(s) as writer:
        writer.append(sample.stem, "TradeOfferUpserted", {"offer": {"trade_offer_id": "9"}})
        writer.append(WELL, "TradeOfferUpserted", {"offer": {"trade_offer_id": "1"}})
    catch_up(s)
    [record] = parked(s)
    assert record["account"] == sample.stem and "import-legacy" in record["error"]
    assert path.read_bytes() == legacy
    assert read_snapshot(s, WELL) is not None  # the others go on
    # An operator's replay or repair before the import would replace it too: refused.
    with pytest.raises(AccountParked, match="legacy file"):
        reapply_parked(s, sample.stem)
    [result] = replay_accounts(s, [sample.stem], ("file",))
    assert result.error is not None and "import-legacy" in result.error
    report = verify(s)
    [finding] = [f for f in report.findings if f.account == sample.stem]
    assert finding.kind == "unimported" and report.failing(finding)
    assert path.read_bytes() == legacy and parked(s)[0]["waiting"] == 1
    with Writer(s) as writer:
        report = import_dir(writer, path.parent)
    assert (report.ok, report.failed) == (1, 0), report.errors
    catch_up(s)
    assert path.read_bytes() == legacy and parked(s)[0]["waiting"] == 2
    then = f"is imported now: run `tradelog replay file --account {sample.stem}`"
    assert parked(s)[0]["error"].endswith(then)
    assert reapply_parked(s, sample.stem) == 2
    fold = read_snapshot(s, sample.stem)
    assert fold is not None and fold.doc["version"] == 2 and parked(s) == []
    imported = orjson.loads(legacy)
    assert fold.doc["trade_offers"] == imported["trade_offers"]
