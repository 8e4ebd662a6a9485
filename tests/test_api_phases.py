"""Phase 1 (reads from the file snapshots) and phase 2 (reads from the Redis
projection) answer the same documents for the same log: every legacy sample,
imported and saved over HTTP, then upserts, friends and removals, written partly
through a phase-1 API and partly through a phase-2 API, with both projectors
running (as `tradelog up` runs them) against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.testclient import TestClient

from eventlog.settings import Settings
from tests.procs.api_harness import (
    FRIEND,
    FRIEND2,
    HEADERS,
    KEY,
    SAMPLES,
    WAIT_MS,
    account_id,
    serving,
)
from tools.cmd_import import import_dir

SAMPLE_DIR = SAMPLES[0].parent
IMPORTED = [p.stem for p in SAMPLES]
SAVED = [account_id(100 + i) for i in range(len(SAMPLES))]  # the samples, saved over HTTP
FRESH = [account_id(200 + i) for i in range(3)]  # built by upserts and friends alone
NULLS = [account_id(300 + i) for i in range(2)]  # saved with null collections, as sent
ALL = IMPORTED + SAVED + FRESH + NULLS


def ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text[:500]
    body: dict[str, Any] = resp.json()
    assert body["success"] is True
    return body


def upsert(client: TestClient, account: str, **offer: Any) -> dict[str, Any]:
    return ok(
        client.post(
            f"/negotiations/{account}/atomic-upsert-trade-offer",
            json={"trade_offer_data": offer},
            headers=HEADERS,
        )
    )


def write_first_half(client: TestClient, phase: int) -> None:
    for account in NULLS:
        doc = {"trade_offers": None, "negotiations": None, "our_inventory": None}
        ok(client.post(f"/negotiations/{account}", json=doc, headers=HEADERS))
    for path, account in zip(SAMPLES, SAVED, strict=True):
        doc = orjson.loads(path.read_bytes())
        doc["account_steam_id"] = account
        # Friends out of id order: they come back in the client's order, in both phases.
        doc["negotiations"] = dict(reversed(doc["negotiations"].items()))
        body = ok(client.post(f"/negotiations/{account}", json=doc, headers=HEADERS))
        assert body["redis_written"] is True and body["projected"] is True
    for i, account in enumerate(IMPORTED + FRESH):
        body = upsert(client, account, trade_offer_id=str(7_000 + i), state=2, items=[], n=None)
        assert body["operation"] == "added" and body["redis_written"] is True
        upsert(client, account, trade_offer_id=str(7_000 + i), state=3, note={"a": [1, {}]})
        upsert(client, account, trade_offer_id=str(8_000 + i), state="Unknown(12)",
               updated_at="1700000000", language=None)  # fmt: skip
        record = {
            "state": "awaiting_reply",
            "messages": [],
            "inventory": {},
            "followUpCount": 0,
            "language": {"code": "de"} if i % 2 else "de",  # open documents mix types
            "ts": str(1_700_000_000 + i),
        }
        ok(client.put(f"/negotiations/{account}/friend/{FRIEND2}", json={}, headers=HEADERS))
        ok(client.put(f"/negotiations/{account}/friend/{FRIEND}", json=record, headers=HEADERS))
    for account in SAVED[:3]:
        doc = ok(client.get(f"/negotiations/{account}", headers=HEADERS))["data"]
        if doc["trade_offers"]:
            first = doc["trade_offers"][0]["trade_offer_id"]
            upsert(client, account, trade_offer_id=first, state=7, phase=phase)
        friends = list(doc["negotiations"])[:2]
        ok(client.post(f"/negotiations/{account}/remove-friends",
                       json={"friend_steam_ids": friends}, headers=HEADERS))  # fmt: skip


def write_second_half(client: TestClient, phase: int) -> None:
    for i, account in enumerate(ALL[:-1]):  # the last null account stays as it was saved
        upsert(client, account, trade_offer_id=str(7_000 + i), state=6, phase=phase)
        ok(client.delete(f"/negotiations/{account}/friend/{FRIEND2}", headers=HEADERS))
    for account in IMPORTED[:2]:  # a load-change-save round trip, as the bots do it
        doc = ok(client.get(f"/negotiations/{account}", headers=HEADERS))["data"]
        doc["account_username"] = "renamed"
        doc["negotiations"].pop(FRIEND, None)
        etag = f'"{doc["version"]}"'
        ok(client.post(f"/negotiations/{account}", json=doc, headers={**HEADERS, "If-Match": etag}))


def wait_in_sync(client: TestClient, accounts: list[str], timeout_s: float = 20.0) -> None:
    """Until log, file projection and Redis projection hold the same version of each account."""
    deadline = time.monotonic() + timeout_s
    pending = list(accounts)
    while pending:
        versions = ok(client.get(f"/negotiations/{pending[0]}/health", headers=HEADERS))["versions"]
        if versions["log"] == versions["file"] == versions["redis"] and versions["log"] > 0:
            pending.pop(0)
            continue
        assert time.monotonic() < deadline, f"{pending[0]} not projected everywhere: {versions}"
        time.sleep(0.02)  # poll interval of a deadline wait


def read_all(client: TestClient, source: str) -> dict[str, tuple[bytes, int, str]]:
    out = {}
    for account in ALL:
        resp = client.get(f"/negotiations/{account}", headers=HEADERS)
        body = ok(resp)
        assert body["source"] == source
        assert body["created_new"] is False, account
        assert body["data"]["version"] == body["version"]
        out[account] = (orjson.dumps(body["data"]), body["version"], resp.headers["etag"])
    return out


def summary(client: TestClient, source: str) -> dict[str, Any]:
    body = ok(client.get("/negotiations", headers=HEADERS))
    assert body.pop("source") == source
    return body


def assert_same(
    one: dict[str, tuple[bytes, int, str]], two: dict[str, tuple[bytes, int, str]]
) -> None:
    assert one.keys() == two.keys()
    for account in one:
        a, b = one[account], two[account]
        assert orjson.loads(a[0]) == orjson.loads(b[0]), account  # same JSON
        assert a == b, account  # and the same bytes: key order too, and version and ETag


def test_phase_1_and_phase_2_read_the_same_documents(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    common = {
        "api_keys": KEY,
        "redis_url": redis_url,
        "projection_wait_ms": WAIT_MS,
        "redis_timeout_ms": 5000,  # a stall of the test's Redis is not an outage here
    }
    s1 = make_settings(phase=1, **common)
    s2 = make_settings(phase=2, **common)
    both = ("file", "redis")

    with serving(s1, both) as c1:
        report = import_dir(c1.app.state.tradelog.writer, SAMPLE_DIR)  # type: ignore[attr-defined]
        assert (report.ok, report.failed) == (len(SAMPLES), 0), report.errors
        wait_in_sync(c1, IMPORTED)
        write_first_half(c1, 1)
        wait_in_sync(c1, ALL)
        phase1_a = read_all(c1, "file")
        summary1_a = summary(c1, "file")

    with serving(s2, both) as c2:
        assert_same(phase1_a, read_all(c2, "redis"))
        assert summary(c2, "redis") == summary1_a
        write_second_half(c2, 2)
        wait_in_sync(c2, ALL)
        phase2_b = read_all(c2, "redis")
        summary2_b = summary(c2, "redis")
        health = ok(c2.get(f"/negotiations/{IMPORTED[0]}/health", headers=HEADERS))
        assert health["redis_exists"] is True and health["file_exists"] is True
        assert health["redis_metadata"]["account_steam_id"] == IMPORTED[0]
        unknown = ok(c2.get(f"/negotiations/{account_id(999)}", headers=HEADERS))
        assert unknown["created_new"] is True and unknown["source"] == "redis"
        assert unknown["version"] == 0
        ready = ok(c2.get("/ready", headers=HEADERS))
        assert ready["redis"]["reachable"] is True
        assert set(ready["projectors"]["redis"]["lag"].values()) == {0}

    with serving(s1, both) as c1:
        assert_same(phase2_b, read_all(c1, "file"))
        assert summary(c1, "file") == summary2_b

    # What was written is there: the samples' own fields (the server sets the times).
    for path, account in zip(SAMPLES, SAVED, strict=True):
        doc = orjson.loads(phase2_b[account][0])
        sample = orjson.loads(path.read_bytes())
        assert doc["account_steam_id"] == account
        server_set = ("account_steam_id", "updated_at", "trade_offers_updated_at")
        for key, value in sample.items():
            if key not in (*server_set, "trade_offers", "negotiations"):
                assert doc[key] == value, (account, key)
        offers = {o["trade_offer_id"] for o in doc["trade_offers"]}
        assert offers >= {o["trade_offer_id"] for o in sample["trade_offers"]}
    kept = orjson.loads(phase2_b[NULLS[-1]][0])
    assert kept["trade_offers"] is None and kept["negotiations"] is None
    made = orjson.loads(phase2_b[NULLS[0]][0])  # an offer made a list of the null
    assert [o["trade_offer_id"] for o in made["trade_offers"]] == [str(7_000 + len(ALL) - 2)]
    assert made["negotiations"] is None  # removing an absent friend left it as it was
    for path, account in zip(SAMPLES, SAVED, strict=True):  # in the order sent
        sent = list(reversed(orjson.loads(path.read_bytes())["negotiations"]))
        held = list(orjson.loads(phase2_b[account][0])["negotiations"])
        assert held == [f for f in sent if f in held], account
    fresh = orjson.loads(phase2_b[FRESH[0]][0])["negotiations"]
    assert list(fresh) == [FRIEND]  # FRIEND2 (added first) was removed
    imported = orjson.loads(phase1_a[IMPORTED[-1]][0])["negotiations"]
    assert list(imported)[-2:] == [FRIEND2, FRIEND]  # new friends come last, as added
    renamed = orjson.loads(phase2_b[IMPORTED[0]][0])
    assert renamed["account_username"] == "renamed"
    assert FRIEND not in renamed["negotiations"]


def test_a_retry_after_a_restart_says_its_event_is_in_the_stream(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    """The first answer's redis_written, again: a new process's writer has not added the
    event itself, and finds it in the stream as it checks the retry."""
    settings = make_settings(
        api_keys=KEY, redis_url=redis_url, projection_wait_ms=WAIT_MS, redis_timeout_ms=5000
    )
    path = f"/negotiations/{FRESH[0]}/atomic-upsert-trade-offer"
    request = {"json": {"trade_offer_data": {"trade_offer_id": "77"}}}
    headers = {**HEADERS, "Idempotency-Key": "restart-1"}
    with serving(settings) as client:
        first = ok(client.post(path, headers=headers, **request))
    assert first["redis_written"] is True and first["appended"] is True
    with serving(settings) as client:  # another process's app: a new writer
        again = ok(client.post(path, headers=headers, **request))
    assert again["appended"] is False and again["event_id"] == first["event_id"]
    assert again["redis_written"] is True and again["redis_operation"] == "written"
