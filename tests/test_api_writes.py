"""Guarantees 5 and 6 over HTTP: a write whose expected version (`If-Match` or
`expected_version` in the body) does not match is a 409 that appends nothing; a
write repeated with the same `Idempotency-Key` answers the first result and
appends nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from eventlog.settings import Settings
from tests.procs.api_harness import (
    ACCOUNT,
    FRIEND,
    FRIEND2,
    HEADERS,
    KEY,
    WAIT_MS,
    assert_error,
    log_length,
    serving,
)

BASE = f"/negotiations/{ACCOUNT}"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(api_keys=KEY, projection_wait_ms=WAIT_MS)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with serving(settings) as c:
        yield c
        # Every test leaves the projection caught up with the log (nothing half-applied).
        health = c.get(f"{BASE}/health", headers=HEADERS).json()
        assert health["versions"]["file"] == health["versions"]["log"]


def version(client: TestClient) -> int:
    resp = client.get(BASE, headers=HEADERS)
    v = int(resp.json()["version"])
    assert resp.headers["etag"] == f'"{v}"'
    return v


def seed(client: TestClient) -> None:
    """Version 2: one offer and one friend."""
    r = client.post(
        f"{BASE}/atomic-upsert-trade-offer",
        json={"trade_offer_data": {"trade_offer_id": "1"}},
        headers=HEADERS,
    )
    assert r.status_code == 200, r.text
    r = client.put(f"{BASE}/friend/{FRIEND}", json={"state": "a"}, headers=HEADERS)
    assert r.status_code == 200, r.text
    assert version(client) == 2


# Each write route: (method, path, body); `body` may take an expected_version.
def writes(expected: int | None = None) -> list[tuple[str, str, Any]]:
    extra = {} if expected is None else {"expected_version": expected}
    offer = {"trade_offer_data": {"trade_offer_id": "2"}, **extra}
    return [
        ("POST", BASE, {"account_username": "bot", "negotiations": {FRIEND: {"state": "a"}}}),
        ("POST", f"{BASE}/atomic-upsert-trade-offer", offer),
        ("PUT", f"{BASE}/friend/{FRIEND2}", {"state": "b"}),
        ("DELETE", f"{BASE}/friend/{FRIEND}", None),
        ("POST", f"{BASE}/remove-friends", {"friend_steam_ids": [FRIEND], **extra}),
    ]  # fmt: skip


ROUTE_IDS = ["save", "upsert", "put-friend", "delete-friend", "remove-friends"]


@pytest.mark.parametrize("index", range(5), ids=ROUTE_IDS)
@pytest.mark.parametrize("stale", ['"1"', '"3"', '"0"', 'W/"1"', "1"])
def test_if_match_wrong_version_is_409_and_appends_nothing(
    client: TestClient, settings: Settings, index: int, stale: str
) -> None:
    seed(client)
    method, path, body = writes()[index]
    length = log_length(settings)
    resp = client.request(method, path, json=body, headers={**HEADERS, "If-Match": stale})
    err = assert_error(resp, 409, "version_conflict")
    assert err["details"]["current"] == 2
    assert log_length(settings) == length
    assert version(client) == 2


@pytest.mark.parametrize("index", range(5), ids=ROUTE_IDS)
def test_if_match_right_version_succeeds(client: TestClient, index: int) -> None:
    seed(client)
    method, path, body = writes()[index]
    etag = client.get(BASE, headers=HEADERS).headers["etag"]  # the GET's ETag, as sent back
    resp = client.request(method, path, json=body, headers={**HEADERS, "If-Match": etag})
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 3
    assert resp.headers["etag"] == '"3"'
    assert version(client) == 3
    # The same If-Match again is now stale.
    resp = client.request(method, path, json=body, headers={**HEADERS, "If-Match": etag})
    assert_error(resp, 409, "version_conflict")


def test_if_match_star_and_weak_forms(client: TestClient) -> None:
    seed(client)
    for header in ("*", 'W/"3"'):
        headers = {**HEADERS, "If-Match": header}
        resp = client.put(f"{BASE}/friend/{FRIEND2}", json={"state": header}, headers=headers)
        assert resp.status_code == 200, (header, resp.text)
    assert version(client) == 4


def test_if_match_on_a_new_account(client: TestClient, settings: Settings) -> None:
    url = f"{BASE}/atomic-upsert-trade-offer"
    body = {"trade_offer_data": {"trade_offer_id": "1"}}
    resp = client.post(url, json=body, headers={**HEADERS, "If-Match": '"1"'})
    assert_error(resp, 409, "version_conflict")
    assert log_length(settings) == 0
    resp = client.post(url, json=body, headers={**HEADERS, "If-Match": '"0"'})
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 1


@pytest.mark.parametrize("index", [1, 4], ids=["upsert", "remove-friends"])
def test_expected_version_in_the_body(client: TestClient, settings: Settings, index: int) -> None:
    seed(client)
    for stale in (0, 1, 3, 99, 2**63 - 1):
        method, path, body = writes(stale)[index]
        length = log_length(settings)
        resp = client.request(method, path, json=body, headers=HEADERS)
        err = assert_error(resp, 409, "version_conflict")
        assert err["details"] == {"expected": stale, "current": 2}
        assert log_length(settings) == length
    method, path, body = writes(2)[index]
    resp = client.request(method, path, json=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 3
    assert version(client) == 3


@pytest.mark.parametrize("bad", [-1, 2**63, "2", 1.5, True, [2], {"v": 2}])
def test_expected_version_of_a_wrong_type_is_400(
    client: TestClient, settings: Settings, bad: Any
) -> None:
    seed(client)
    body = {"trade_offer_data": {"trade_offer_id": "9"}, "expected_version": bad}
    resp = client.post(f"{BASE}/atomic-upsert-trade-offer", json=body, headers=HEADERS)
    assert_error(resp, 400)
    resp = client.post(
        f"{BASE}/remove-friends",
        json={"friend_steam_ids": [FRIEND], "expected_version": bad},
        headers=HEADERS,
    )
    assert_error(resp, 400)
    assert log_length(settings) == 2


# Past 2**63 - 1 no version can match, and the 409's details could not be encoded.
@pytest.mark.parametrize(
    "bad", ['"abc"', '"-1"', "", '"1.0"', '"1", "2"', '"9223372036854775808"', f'"{10**40}"']
)
def test_malformed_if_match_is_400(client: TestClient, settings: Settings, bad: str) -> None:
    seed(client)
    resp = client.put(
        f"{BASE}/friend/{FRIEND2}", json={"state": "x"}, headers={**HEADERS, "If-Match": bad}
    )
    assert_error(resp, 400)
    assert log_length(settings) == 2


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4], ids=ROUTE_IDS)
def test_idempotent_retry_returns_the_first_result(
    client: TestClient, settings: Settings, index: int
) -> None:
    seed(client)
    method, path, body = writes()[index]
    headers = {**HEADERS, "Idempotency-Key": f"retry-{index}"}
    first = client.request(method, path, json=body, headers=headers)
    assert first.status_code == 200, first.text
    one = first.json()
    assert one["version"] == 3
    length = log_length(settings)
    for _ in range(3):
        again = client.request(method, path, json=body, headers=headers)
        assert again.status_code == 200, again.text
        two = again.json()
        assert two["event_id"] == one["event_id"]
        assert two["version"] == one["version"] == 3
        assert two["position"] == one["position"]
        assert two["projected"] is True
        assert log_length(settings) == length
    events = client.get(f"{BASE}/events", headers=HEADERS).json()["events"]
    assert [e["version"] for e in events] == [1, 2, 3]
    assert events[-1]["id"] == one["event_id"]
    assert events[-1]["meta"]["idempotency_key"] == f"retry-{index}"


def test_idempotent_retry_after_later_writes_and_with_a_stale_if_match(
    client: TestClient, settings: Settings
) -> None:
    url = f"{BASE}/atomic-upsert-trade-offer"
    body = {"trade_offer_data": {"trade_offer_id": "7", "state": "Active"}}
    headers = {**HEADERS, "Idempotency-Key": "offer-7", "If-Match": '"0"'}
    first = client.post(url, json=body, headers=headers).json()
    assert first["operation"] == "added" and first["version"] == 1
    for i in range(3):
        client.post(
            url, json={"trade_offer_data": {"trade_offer_id": str(10 + i)}}, headers=HEADERS
        )
    length = log_length(settings)
    # The retry carries the same (now stale) If-Match: it is answered, not refused.
    again = client.post(url, json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["event_id"] == first["event_id"]
    assert again.json()["version"] == 1
    assert again.json()["operation"] == "added"
    assert log_length(settings) == length
    assert version(client) == 4


@pytest.fixture(params=["file-only", "with-redis"])
def either(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Iterator[tuple[TestClient, Settings]]:
    """A client on a file-only data dir, and on one with Redis (the first write of a
    retried key is then read back from its stream entry)."""
    url = request.getfixturevalue("redis_url") if request.param == "with-redis" else ""
    s = make_settings(api_keys=KEY, projection_wait_ms=WAIT_MS, redis_url=url)
    with serving(s) as c:
        yield c, s


def test_an_idempotency_key_reused_for_another_write_is_422(
    either: tuple[TestClient, Settings],
) -> None:
    client, settings = either
    url = f"{BASE}/atomic-upsert-trade-offer"
    headers = {**HEADERS, "Idempotency-Key": "k1"}
    first = client.post(url, json={"trade_offer_data": {"trade_offer_id": "77"}}, headers=headers)
    assert first.status_code == 200 and first.json()["version"] == 1
    assert first.json()["redis_operation"] == ("written" if settings.redis_url else "disabled")
    other = client.post(url, json={"trade_offer_data": {"trade_offer_id": "78"}}, headers=headers)
    body = assert_error(other, 422, "idempotency_key_reused")
    assert "k1" in body["error"] and body["details"] == {"version": 1, "type": "TradeOfferUpserted"}
    friend = client.put(f"{BASE}/friend/76561198123456789", json={"state": "x"}, headers=headers)
    assert_error(friend, 422, "idempotency_key_reused")
    assert log_length(settings) == 1
    again = client.post(url, json={"trade_offer_data": {"trade_offer_id": "77"}}, headers=headers)
    assert again.status_code == 200 and again.json()["event_id"] == first.json()["event_id"]


def test_different_idempotency_keys_append_separately(
    client: TestClient, settings: Settings
) -> None:
    url = f"{BASE}/atomic-upsert-trade-offer"
    body = {"trade_offer_data": {"trade_offer_id": "7"}}
    a = client.post(url, json=body, headers={**HEADERS, "Idempotency-Key": "a"}).json()
    b = client.post(url, json=body, headers={**HEADERS, "Idempotency-Key": "b"}).json()
    assert a["event_id"] != b["event_id"]
    assert (a["version"], b["version"]) == (1, 2)
    assert (a["operation"], b["operation"]) == ("added", "updated")
    assert log_length(settings) == 2


def test_idempotency_key_is_per_account(client: TestClient) -> None:
    other = "76561199027642399"
    body = {"trade_offer_data": {"trade_offer_id": "7"}}
    headers = {**HEADERS, "Idempotency-Key": "same"}
    a = client.post(f"{BASE}/atomic-upsert-trade-offer", json=body, headers=headers).json()
    b = client.post(
        f"/negotiations/{other}/atomic-upsert-trade-offer", json=body, headers=headers
    ).json()
    assert a["event_id"] != b["event_id"]
    assert a["version"] == b["version"] == 1


def test_overlong_idempotency_key_is_400(client: TestClient, settings: Settings) -> None:
    resp = client.post(
        f"{BASE}/atomic-upsert-trade-offer",
        json={"trade_offer_data": {"trade_offer_id": "7"}},
        headers={**HEADERS, "Idempotency-Key": "k" * 201},
    )
    assert_error(resp, 400, "invalid_idempotency_key")
    assert log_length(settings) == 0


def test_remove_friends_retry_is_the_same_list_not_a_superset(
    either: tuple[TestClient, Settings],
) -> None:
    """The event names only the friends that were present; a retry is still the
    request as it was sent, absent friends included."""
    client, settings = either
    absent = "76561198123456791"
    for friend in (FRIEND, FRIEND2):
        r = client.put(f"{BASE}/friend/{friend}", json={"state": "a"}, headers=HEADERS)
        assert r.status_code == 200, r.text
    url = f"{BASE}/remove-friends"
    headers = {**HEADERS, "Idempotency-Key": "rf-1"}
    first = client.post(url, json={"friend_steam_ids": [FRIEND, absent]}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["removed_friends"] == [FRIEND]
    length = log_length(settings)
    again = client.post(url, json={"friend_steam_ids": [FRIEND, absent]}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["event_id"] == first.json()["event_id"]
    assert again.json()["not_found"] == [absent]
    # FRIEND2 is present: a request naming it is not the first one, whose answer
    # would say it was not found and leave it there.
    for other in ([FRIEND, absent, FRIEND2], [FRIEND, FRIEND2], [FRIEND]):
        resp = client.post(url, json={"friend_steam_ids": other}, headers=headers)
        assert_error(resp, 422, "idempotency_key_reused")
    assert log_length(settings) == length
    assert FRIEND2 in client.get(BASE, headers=HEADERS).json()["data"]["negotiations"]
    # A first request whose friends were all present: a superset is another write too.
    headers = {**HEADERS, "Idempotency-Key": "rf-2"}
    r = client.put(f"{BASE}/friend/{FRIEND}", json={"state": "b"}, headers=HEADERS)
    assert r.status_code == 200, r.text
    first = client.post(url, json={"friend_steam_ids": [FRIEND]}, headers=headers)
    assert first.status_code == 200 and first.json()["removed_friends"] == [FRIEND]
    length = log_length(settings)
    resp = client.post(url, json={"friend_steam_ids": [FRIEND, FRIEND2]}, headers=headers)
    assert_error(resp, 422, "idempotency_key_reused")
    again = client.post(url, json={"friend_steam_ids": [FRIEND]}, headers=headers)
    assert again.status_code == 200 and again.json()["event_id"] == first.json()["event_id"]
    assert log_length(settings) == length


def test_the_retry_of_a_keyed_write_that_removed_nothing_removes_nothing(
    client: TestClient, settings: Settings
) -> None:
    """A removal of an absent friend appends nothing; its retry, after the friend was
    added back meanwhile, is still answered with the first result: nothing removed."""
    headers = {**HEADERS, "Idempotency-Key": "noop-1"}
    first = client.delete(f"{BASE}/friend/{FRIEND}", headers=headers)
    assert first.status_code == 200 and first.json()["removed"] is False, first.text
    r = client.put(f"{BASE}/friend/{FRIEND}", json={"state": "a"}, headers=HEADERS)
    assert r.status_code == 200, r.text
    url = f"{BASE}/remove-friends"
    listed = {**HEADERS, "Idempotency-Key": "noop-2"}
    first = client.post(url, json={"friend_steam_ids": [FRIEND2]}, headers=listed)
    assert first.status_code == 200 and first.json()["removed_count"] == 0, first.text
    r = client.put(f"{BASE}/friend/{FRIEND2}", json={"state": "b"}, headers=HEADERS)
    assert r.status_code == 200, r.text
    length = log_length(settings)

    again = client.delete(f"{BASE}/friend/{FRIEND}", headers=headers)
    assert again.status_code == 200 and again.json()["removed"] is False, again.text
    again = client.post(url, json={"friend_steam_ids": [FRIEND2]}, headers=listed)
    assert again.status_code == 200 and again.json()["removed_count"] == 0, again.text
    # The key taken for another write is refused, as after a write that appended.
    resp = client.post(url, json={"friend_steam_ids": [FRIEND2, FRIEND]}, headers=listed)
    assert_error(resp, 422, "idempotency_key_reused")
    resp = client.put(f"{BASE}/friend/{FRIEND}", json={"state": "c"}, headers=headers)
    assert_error(resp, 422, "idempotency_key_reused")
    assert log_length(settings) == length
    negotiations = client.get(BASE, headers=HEADERS).json()["data"]["negotiations"]
    assert negotiations[FRIEND]["state"] == "a" and negotiations[FRIEND2]["state"] == "b"
