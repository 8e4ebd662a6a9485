"""Every route of the DESIGN "HTTP API" table through Starlette's TestClient, in
phase 1 with a file projector running in a thread: answers, the error shape, the
API key on every route but /health, read-your-writes, ETags, and that reads
append nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from eventlog.settings import Settings
from tests.procs.api_harness import (
    ACCOUNT,
    FRIEND,
    FRIEND2,
    HEADERS,
    KEY,
    KEY2,
    WAIT_MS,
    account_id,
    assert_error,
    log_length,
    serving,
)

BASE = f"/negotiations/{ACCOUNT}"
WRITE_FIELDS = ("version", "position", "event_id", "redis_written", "projected")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(api_keys=f"{KEY},{KEY2}", projection_wait_ms=WAIT_MS)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with serving(settings) as c:
        yield c


def assert_written(body: dict[str, Any], version: int) -> None:
    """What every write answers: the event's version, position and id, both flags."""
    assert body["success"] is True, body
    for name in WRITE_FIELDS:
        assert name in body, (name, body)
    assert body["version"] == version, body
    assert set(body["position"]) == {"partition", "offset"}, body
    assert isinstance(body["event_id"], str) and body["event_id"], body
    assert body["redis_written"] is False  # Redis is disabled in these tests
    assert body["projected"] is True, body  # the projector thread is running


def get_doc(client: TestClient, account: str = ACCOUNT) -> dict[str, Any]:
    resp = client.get(f"/negotiations/{account}", headers=HEADERS)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert resp.headers["etag"] == f'"{body["version"]}"'
    assert body["data"]["version"] == body["version"]
    return body


def history(client: TestClient, account: str = ACCOUNT) -> list[dict[str, Any]]:
    resp = client.get(f"/negotiations/{account}/events?limit=1000", headers=HEADERS)
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = resp.json()["events"]
    return events


def offer(oid: str, **fields: Any) -> dict[str, Any]:
    return {"trade_offer_data": {"trade_offer_id": oid, **fields}}


# ---------------------------------------------------------------- keys


def test_health_needs_no_key(client: TestClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["success"] is True
    assert body["status"] == "ok"
    assert body["service"] == "tradelog"
    assert isinstance(body["uptime"], (int, float)) and body["uptime"] >= 0
    assert body["redis"] == "disabled"  # (this client's settings have no Redis)


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", BASE, None),
    ("POST", BASE, {"account_username": "bot"}),
    ("POST", f"{BASE}/atomic-upsert-trade-offer", offer("1")),
    ("PUT", f"{BASE}/friend/{FRIEND}", {"state": "x"}),
    ("DELETE", f"{BASE}/friend/{FRIEND}", None),
    ("POST", f"{BASE}/remove-friends", {"friend_steam_ids": [FRIEND]}),
    ("GET", f"{BASE}/events", None),
    ("GET", f"{BASE}/health", None),
    ("GET", "/negotiations", None),
    ("GET", "/negotiations/", None),
    ("GET", "/ready", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize("key", [None, "wrong-key", KEY + "x", ""])
def test_key_required_on_every_route_but_health(
    client: TestClient, settings: Settings, method: str, path: str, body: Any, key: str | None
) -> None:
    headers = {} if key is None else {"X-API-Key": key}
    resp = client.request(method, path, json=body, headers=headers)
    assert_error(resp, 401, "unauthorized")
    assert log_length(settings) == 0


def test_every_configured_key_works(client: TestClient) -> None:
    for i, key in enumerate((KEY, KEY2), start=1):
        resp = client.post(
            f"{BASE}/atomic-upsert-trade-offer", json=offer(str(i)), headers={"X-API-Key": key}
        )
        assert resp.status_code == 200, resp.text
        assert_written(resp.json(), i)
        resp = client.get(BASE, headers={"X-API-Key": key})
        assert resp.status_code == 200
        assert resp.json()["version"] == i


# ---------------------------------------------------------------- documents


def test_unknown_account_reads_as_default_and_appends_nothing(
    client: TestClient, settings: Settings
) -> None:
    body = get_doc(client)
    assert body["success"] is True
    assert body["created_new"] is True
    assert body["version"] == 0
    assert body["source"] == "file"
    data = body["data"]
    assert data == {
        "account_steam_id": ACCOUNT,
        "account_username": None,
        "created_at": data["created_at"],
        "updated_at": data["updated_at"],
        "our_inventory": None,
        "our_inventory_updated_at": None,
        "trade_offers": [],
        "trade_offers_updated_at": None,
        "negotiations": {},
        "version": 0,
    }
    assert isinstance(data["created_at"], str) and data["created_at"].endswith("Z")
    get_doc(client)
    assert log_length(settings) == 0
    assert history(client) == []


def test_save_then_get_returns_the_document(client: TestClient) -> None:
    doc: dict[str, Any] = {
        "account_steam_id": ACCOUNT,
        "account_username": "bot07",
        "our_steam_login": "login07",
        "our_inventory": [{"classid": "1", "quantity": 3}, []],
        "language": None,
        "custom": {"nested": [1, 2.5, "x", None, {}]},
        "trade_offers": [
            {"trade_offer_id": "22", "state": 3, "items_to_give": 2, "updated_at": "1700000001"},
            {"trade_offer_id": "11", "state": "Active", "items_to_give": []},
        ],
        "negotiations": {
            FRIEND: {"friend_steam_id": FRIEND, "state": "awaiting_reply", "messages": []},
            FRIEND2: {"state": "x", "language": {"code": "en"}, "followUpCount": 1},
        },
    }
    resp = client.post(BASE, json=doc, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert_written(body, 1)
    assert body["message"]
    assert body["negotiations_count"] == 2
    assert isinstance(body["updated_at"], str)
    assert resp.headers["etag"] == '"1"'

    got = get_doc(client)
    assert got["created_new"] is False
    assert got["version"] == 1
    data = got["data"]
    for key in ("account_username", "our_steam_login", "our_inventory", "language", "custom"):
        assert data[key] == doc[key], key
    assert data["negotiations"] == doc["negotiations"]
    offers = {o["trade_offer_id"]: o for o in data["trade_offers"]}
    assert offers["22"] == {**doc["trade_offers"][0], "state": "Accepted"}  # number -> name
    assert offers["11"] == doc["trade_offers"][1]
    assert data["updated_at"] == body["updated_at"]
    assert data["version"] == 1


def test_atomic_upsert_adds_then_merges(client: TestClient) -> None:
    url = f"{BASE}/atomic-upsert-trade-offer"
    first = {"trade_offer_id": "8189748113", "friend_steam_id": FRIEND, "items": [1, 2]}
    resp = client.post(url, json={"trade_offer_data": first}, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    added = resp.json()
    assert_written(added, 1)
    assert added["operation"] == "added"
    assert added["trade_offer_id"] == "8189748113"
    assert added["state"] == "Active"  # the default for a new offer
    assert isinstance(added["updated_at"], str)
    assert "redis_operation" in added
    assert resp.headers["etag"] == '"1"'

    resp = client.post(url, json=offer("8189748113", state=3, note="n"), headers=HEADERS)
    updated = resp.json()
    assert_written(updated, 2)
    assert updated["operation"] == "updated"
    assert updated["state"] == "Accepted"  # by number, stored as the name

    resp = client.post(url, json=offer("8189748113", state="Unknown(12)"), headers=HEADERS)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "Unknown(12)"

    resp = client.post(url, json=offer("8189748113", state="Accepted"), headers=HEADERS)
    assert resp.status_code == 200, resp.text

    data = get_doc(client)["data"]
    assert data["version"] == 4
    [stored] = data["trade_offers"]
    assert stored["items"] == [1, 2] and stored["note"] == "n"  # {...old, ...new}
    assert stored["friend_steam_id"] == FRIEND
    assert stored["state"] == "Accepted"
    states = [h["state"] for h in stored["state_history"]]
    assert states == ["Active", "Accepted", "Unknown(12)", "Accepted"]
    assert data["trade_offers_updated_at"] == data["updated_at"]
    kinds = [e["type"] for e in history(client)]
    assert kinds == ["TradeOfferUpserted"] * 4
    assert history(client)[1]["data"]["offer"]["state"] == "Accepted"  # stored as the name


@pytest.mark.parametrize(("given", "stored"), [(1, "Invalid"), (11, "InEscrow"), ("7", "Declined")])
def test_offer_state_numbers_stored_as_names(client: TestClient, given: Any, stored: str) -> None:
    resp = client.post(
        f"{BASE}/atomic-upsert-trade-offer", json=offer("5", state=given), headers=HEADERS
    )
    assert resp.status_code == 200, resp.text
    assert get_doc(client)["data"]["trade_offers"][0]["state"] == stored


def test_friend_put_then_delete(client: TestClient, settings: Settings) -> None:
    url = f"{BASE}/friend/{FRIEND}"
    record = {"state": "awaiting_reply", "messages": [{"text": "hi"}], "language": "en"}
    resp = client.put(url, json=record, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert_written(created, 1)
    assert created["operation"] == "created"
    assert created["friend_steam_id"] == FRIEND

    changed = {**record, "state": "replied", "followUpCount": 2}
    resp = client.put(url, json=changed, headers=HEADERS)
    assert resp.json()["operation"] == "updated"
    assert resp.json()["previous_state"] == "awaiting_reply"
    assert get_doc(client)["data"]["negotiations"] == {FRIEND: changed}

    resp = client.delete(url, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    removed = resp.json()
    assert_written(removed, 3)
    assert removed["removed"] is True
    assert removed["previous_state"] == "replied"
    assert get_doc(client)["data"]["negotiations"] == {}

    before = len(history(client))
    length = log_length(settings)
    resp = client.delete(url, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    absent = resp.json()
    assert absent["success"] is True
    assert absent["removed"] is False
    assert absent["version"] == 3
    assert len(history(client)) == before == 3
    assert log_length(settings) == length


def test_delete_of_a_friend_never_seen_appends_nothing(
    client: TestClient, settings: Settings
) -> None:
    resp = client.delete(f"/negotiations/{account_id(3)}/friend/{FRIEND}", headers=HEADERS)
    assert resp.status_code == 200, resp.text
    assert resp.json()["removed"] is False
    assert resp.json()["version"] == 0
    assert log_length(settings) == 0
    assert history(client, account_id(3)) == []


def test_remove_friends(client: TestClient, settings: Settings) -> None:
    for f in (FRIEND, FRIEND2):
        resp = client.put(f"{BASE}/friend/{f}", json={"state": "s"}, headers=HEADERS)
        assert resp.status_code == 200, resp.text
    absent = account_id(50)
    resp = client.post(
        f"{BASE}/remove-friends",
        json={"friend_steam_ids": [FRIEND, absent, FRIEND2, FRIEND]},
        headers=HEADERS,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert_written(body, 3)
    assert body["removed_count"] == 2
    assert sorted(body["removed_friends"]) == sorted([FRIEND, FRIEND2])
    assert get_doc(client)["data"]["negotiations"] == {}
    [last] = history(client)[-1:]
    assert last["type"] == "FriendsRemoved"
    assert sorted(last["data"]["friend_steam_ids"]) == sorted([FRIEND, FRIEND2])

    length = log_length(settings)
    resp = client.post(
        f"{BASE}/remove-friends", json={"friend_steam_ids": [FRIEND, absent]}, headers=HEADERS
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["removed_count"] == 0
    assert resp.json()["removed_friends"] == []
    assert log_length(settings) == length


# ---------------------------------------------------------------- history and status


def test_events_paging(client: TestClient) -> None:
    for i in range(5):
        resp = client.post(
            f"{BASE}/atomic-upsert-trade-offer",
            json=offer(str(100 + i)),
            headers={**HEADERS, "X-Request-Id": f"req-{i}", "Idempotency-Key": f"k{i}"},
        )
        assert resp.status_code == 200, resp.text
    resp = client.get(f"{BASE}/events", headers=HEADERS)
    assert resp.status_code == 200
    body = resp.json()
    assert [e["version"] for e in body["events"]] == [1, 2, 3, 4, 5]
    assert body["next_from_version"] == 6
    first = body["events"][0]
    assert set(first) >= {"id", "account", "version", "partition", "offset", "type", "ts"}
    assert set(first) >= {"data", "meta", "schema"}
    assert first["account"] == ACCOUNT
    assert first["meta"]["source"] == "api"
    assert first["meta"]["request_id"] == "req-0"
    assert first["meta"]["idempotency_key"] == "k0"
    assert first["schema"] == 1
    assert first["data"] == {"offer": {"trade_offer_id": "100"}}

    resp = client.get(f"{BASE}/events?from_version=2&limit=2", headers=HEADERS)
    page = resp.json()
    assert [e["version"] for e in page["events"]] == [2, 3]
    assert page["next_from_version"] == 4
    page = client.get(f"{BASE}/events?from_version=4&limit=100", headers=HEADERS).json()
    assert [e["version"] for e in page["events"]] == [4, 5]
    assert page["next_from_version"] == 6
    page = client.get(f"{BASE}/events?from_version=6", headers=HEADERS).json()
    assert page["events"] == [] and page["next_from_version"] == 6
    page = client.get(f"{BASE}/events?from_version=0&limit=2", headers=HEADERS).json()
    assert [e["version"] for e in page["events"]] == [1, 2]  # 0: from the start
    assert page["next_from_version"] == 3
    offsets = [e["offset"] for e in body["events"]]
    assert offsets == sorted(offsets)


def test_account_health(client: TestClient) -> None:
    resp = client.get(f"{BASE}/health", headers=HEADERS)
    assert resp.status_code == 200
    empty = resp.json()
    assert empty["steam_id"] == ACCOUNT
    assert empty["file_exists"] is False
    assert empty["redis_exists"] is False
    assert empty["redis_metadata"] is None
    assert empty["versions"] == {"log": 0, "file": 0, "redis": None}

    for i in range(2):
        client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer(str(i)), headers=HEADERS)
    body = client.get(f"{BASE}/health", headers=HEADERS).json()
    assert body["success"] is True
    assert body["file_exists"] is True
    assert isinstance(body["file_stats"], dict) and body["file_stats"]["size"] > 0
    assert body["versions"] == {"log": 2, "file": 2, "redis": None}
    assert body["in_sync"] is True  # Redis is disabled: the files are the whole story


def test_account_health_is_not_in_sync_while_redis_lacks_the_account(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    # Redis on, but no Redis projector runs: the stream has the events, the projection not.
    s = make_settings(api_keys=KEY, projection_wait_ms=WAIT_MS, redis_url=redis_url)
    with serving(s) as client:
        client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("1"), headers=HEADERS)
        body = client.get(f"{BASE}/health", headers=HEADERS).json()
        assert client.get("/health").json()["redis"] == "ok"  # the write reached its stream
    assert body["versions"] == {"log": 1, "file": 1, "redis": None}
    assert body["in_sync"] is False


@pytest.mark.parametrize("path", ["/negotiations", "/negotiations/"])
def test_summary_answers_with_and_without_slash(client: TestClient, path: str) -> None:
    client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("1", state=3), headers=HEADERS)
    client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("2"), headers=HEADERS)
    client.put(f"/negotiations/{account_id(1)}/friend/{FRIEND}", json={}, headers=HEADERS)
    stateless = {"account_steam_id": account_id(2), "trade_offers": [{"trade_offer_id": "3"}]}
    client.post(f"/negotiations/{account_id(2)}", json=stateless, headers=HEADERS)
    resp = client.get(path, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True
    assert body["accounts"] == 3
    assert body["trade_offers"] == 3
    assert body["trade_offers_by_state"] == {"Accepted": 1, "Active": 1, "unknown": 1}
    assert body["friends"] == 1
    assert body["events"] == 4
    assert body["source"] == "file"


def _ready_when_checkpointed(client: TestClient) -> Any:
    """/ready once the file projector's durable checkpoint shows no lag (bounded):
    /ready and /metrics report the checkpoint, not what a waiting writer was told."""
    deadline = time.monotonic() + 10
    while True:
        resp = client.get("/ready", headers=HEADERS)
        lag = resp.json()["projectors"]["file"]["lag"]
        if set(lag.values()) == {0} or time.monotonic() > deadline:
            return resp


def test_ready(client: TestClient) -> None:
    client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("1"), headers=HEADERS)
    resp = _ready_when_checkpointed(client)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True
    assert body["log_writable"] is True
    assert body["redis"] == {"enabled": False, "reachable": False}
    file = body["projectors"]["file"]
    assert set(file["lag"].values()) == {0}
    assert isinstance(file["heartbeat"], int) and file["heartbeat"] > 0
    assert file["parked"] == []


def test_metrics(client: TestClient) -> None:
    client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("1"), headers=HEADERS)
    _ready_when_checkpointed(client)
    resp = client.get("/metrics", headers=HEADERS)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for name in (
        "tradelog_append_seconds",
        "tradelog_events_appended_total",
        "tradelog_projection_lag_events",
        "tradelog_redis_written_failures_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert any(line.startswith(name) for line in text.splitlines()), name
    assert 'tradelog_events_appended_total{type="TradeOfferUpserted"}' in text
    assert 'tradelog_append_seconds_count{type="TradeOfferUpserted"}' in text
    assert 'tradelog_projection_lag_events{partition="0",projector="file"} 0.0' in text


def test_openapi_describes_every_route(client: TestClient) -> None:
    resp = client.get("/openapi.json", headers=HEADERS)
    assert resp.status_code == 200
    schema = resp.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    expected = {
        "/negotiations/{steamId}": {"get", "post"},
        "/negotiations/{steamId}/atomic-upsert-trade-offer": {"post"},
        "/negotiations/{steamId}/friend/{friendSteamId}": {"put", "delete"},
        "/negotiations/{steamId}/remove-friends": {"post"},
        "/negotiations/{steamId}/events": {"get"},
        "/negotiations/{steamId}/health": {"get"},
        "/negotiations": {"get"},
        "/negotiations/": {"get"},
        "/health": {"get"},
        "/ready": {"get"},
        "/metrics": {"get"},
        "/openapi.json": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, paths[path].keys())
    assert "ApiKey" in schema["components"]["securitySchemes"]
    for name in ("AccountDocument", "UpsertTradeOfferRequest", "ErrorAnswer", "SaveAnswer"):
        assert name in schema["components"]["schemas"], name


# ---------------------------------------------------------------- the error shape elsewhere


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope", headers=HEADERS), 404, "not_found")
    resp = client.patch(BASE, json={}, headers=HEADERS)
    assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers.get("allow", "")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (BASE, {"GET", "HEAD", "POST"}),
        (f"{BASE}/friend/{FRIEND}", {"PUT", "DELETE"}),
        (f"{BASE}/remove-friends", {"POST"}),
        ("/negotiations", {"GET", "HEAD"}),
    ],
)
def test_a_405_names_every_method_of_the_path(
    client: TestClient, settings: Settings, path: str, allowed: set[str]
) -> None:
    """Allow lists what the resource supports (RFC 9110), not only the methods of
    the first of its routes: a save to the document's URL is a POST."""
    resp = client.patch(path, json={}, headers=HEADERS)
    assert_error(resp, 405, "method_not_allowed")
    assert {m.strip() for m in resp.headers["allow"].split(",")} == allowed
    assert log_length(settings) == 0


def test_the_allowed_methods_are_found_under_a_root_path() -> None:
    from starlette.requests import Request

    from api.app import _methods_of, _route_path

    scope = {"type": "http", "path": f"/api{BASE}", "root_path": "/api", "headers": []}
    assert _methods_of(_route_path(Request(scope))) == ["GET", "HEAD", "POST"]


def test_an_event_without_x_request_id_still_names_a_request(client: TestClient) -> None:
    resp = client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("300"), headers=HEADERS)
    assert resp.status_code == 200, resp.text
    resp = client.put(f"{BASE}/friend/76561198123456789", json={"state": "x"}, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    events = client.get(f"{BASE}/events", headers=HEADERS).json()["events"]
    ids = [e["meta"]["request_id"] for e in events]
    assert len(ids) == 2 and all(isinstance(i, str) and i for i in ids)
    assert ids[0] != ids[1]


# ---------------------------------------------------------------- X-Request-Id


ANSWERS: list[tuple[str, str, Any]] = [
    *ROUTES,
    ("GET", "/health", None),
    ("GET", "/nope", None),  # 404
    ("PATCH", BASE, {}),  # 405
    ("GET", "/negotiations/123", None),  # 400
    ("POST", BASE, [1]),  # 400
]


@pytest.mark.parametrize(
    ("method", "path", "body"), ANSWERS, ids=[f"{m} {p}" for m, p, _ in ANSWERS]
)
def test_every_answer_names_its_request(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    given = client.request(method, path, json=body, headers={**HEADERS, "X-Request-Id": "r-7"})
    assert given.headers.get("x-request-id") == "r-7", (given.status_code, given.headers)
    made = [client.request(method, path, json=body, headers=HEADERS) for _ in range(2)]
    ids = [r.headers.get("x-request-id") for r in made]
    assert all(isinstance(i, str) and i for i in ids), ids
    assert ids[0] != ids[1]
    unauthorized = client.request(method, path, json=body, headers={"X-Request-Id": "r-8"})
    assert unauthorized.headers.get("x-request-id") == "r-8"


def test_a_write_answers_the_request_id_its_event_records(client: TestClient) -> None:
    resp = client.post(f"{BASE}/atomic-upsert-trade-offer", json=offer("400"), headers=HEADERS)
    assert resp.status_code == 200, resp.text
    resp2 = client.put(
        f"{BASE}/friend/{FRIEND}", json={"state": "x"}, headers={**HEADERS, "X-Request-Id": "r-9"}
    )
    assert resp2.status_code == 200, resp2.text
    events = client.get(f"{BASE}/events", headers=HEADERS).json()["events"]
    assert [e["meta"]["request_id"] for e in events] == [
        resp.headers["x-request-id"],
        "r-9",
    ]


def test_an_internal_error_is_answered_by_its_route_and_names_its_request(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import api.status

    def crash(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(api.status, "summarize", crash)
    # The client raises what escapes the app: Starlette's last-resort handler raises
    # the error again after its 500, and uvicorn then drops the kept-alive connection.
    with TestClient(create_app(settings), raise_server_exceptions=True) as c:
        resp = c.get("/negotiations", headers={**HEADERS, "X-Request-Id": "r-10"})
        assert_error(resp, 500, "internal_error")
        assert resp.headers.get("x-request-id") == "r-10"
        assert c.get("/health").status_code == 200
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
