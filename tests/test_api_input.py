"""Guarantee 8 over HTTP: invalid ids, wrong types, bad JSON and oversized bodies get
a 4xx with the error shape (`error` a string, a `code`) and never reach the log;
large legitimate documents (3 MiB) are accepted and read back as sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from eventlog.settings import Settings, load_settings
from tests.procs.api_harness import (
    ACCOUNT,
    FRIEND,
    HEADERS,
    KEY,
    WAIT_MS,
    assert_error,
    log_length,
    serving,
)

BASE = f"/negotiations/{ACCOUNT}"
MIB = 1024 * 1024
OTHER = "76561199027642399"  # a valid SteamID64 that is not ACCOUNT


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("api-input") / "data"
    return load_settings(
        data_dir=data, redis_url="", partitions=4, api_keys=KEY, projection_wait_ms=WAIT_MS
    )


@pytest.fixture(scope="module")
def app_client(module_settings: Settings) -> Iterator[TestClient]:
    with serving(module_settings) as c:
        # Something in the log (and in the account), so "unchanged" means something.
        r = c.put(f"{BASE}/friend/{FRIEND}", json={"state": "seed"}, headers=HEADERS)
        assert r.status_code == 200, r.text
        yield c


@pytest.fixture
def client(app_client: TestClient, module_settings: Settings) -> Iterator[TestClient]:
    """The module's client; each test must leave the log exactly as it found it."""
    before = log_length(module_settings)
    version = app_client.get(BASE, headers=HEADERS).json()["version"]
    yield app_client
    assert log_length(module_settings) == before, "a rejected request reached the log"
    assert app_client.get(BASE, headers=HEADERS).json()["version"] == version


def rejected(resp: Any, status: int = 400, code: str | None = None) -> dict[str, Any]:
    body = assert_error(resp, status, code)
    assert len(body["error"]) > 5  # a readable message, not a bare code
    return body


# ---------------------------------------------------------------- ids in the path

BAD_STEAM_IDS = [
    "7656119902763448",  # 16 digits
    "765611990276344800",  # 18 digits
    "7656119902763448a",  # a letter
    "abcdefghijklmnopq",
    "76561197960265728",  # one below the smallest SteamID64
    "76561202255233024",  # one above the largest
    "99999999999999999",
    "00000000000000000",
    "%D9%A77656119902763448",  # an Arabic-Indic digit: \d would match it
    "76561199027634480%0A",  # trailing newline: `$` would match before it
    "%2076561199027634480",
    "-7656119902763448",
    "7.656119902763448",
]


def account_routes(account: str) -> list[tuple[str, str, Any]]:
    base = f"/negotiations/{account}"
    offer = {"trade_offer_data": {"trade_offer_id": "1"}}
    return [
        ("GET", base, None),
        ("POST", base, {"account_username": "x"}),
        ("POST", f"{base}/atomic-upsert-trade-offer", offer),
        ("PUT", f"{base}/friend/{FRIEND}", {"state": "x"}),
        ("DELETE", f"{base}/friend/{FRIEND}", None),
        ("POST", f"{base}/remove-friends", {"friend_steam_ids": [FRIEND]}),
        ("GET", f"{base}/events", None),
        ("GET", f"{base}/health", None),
    ]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_STEAM_IDS)
def test_bad_steam_id_in_the_path(client: TestClient, bad: str) -> None:
    for method, path, body in account_routes(bad):
        resp = client.request(method, path, json=body, headers=HEADERS)
        rejected(resp, 400, "invalid_steam_id")


@pytest.mark.parametrize("bad", BAD_STEAM_IDS)
def test_bad_friend_id_in_the_path(client: TestClient, bad: str) -> None:
    for method in ("PUT", "DELETE"):
        body = {"state": "x"} if method == "PUT" else None
        resp = client.request(method, f"{BASE}/friend/{bad}", json=body, headers=HEADERS)
        rejected(resp, 400, "invalid_steam_id")


def test_the_range_ends_are_accepted(app_client: TestClient) -> None:
    for account in ("76561197960265729", "76561202255233023"):
        resp = app_client.get(f"/negotiations/{account}", headers=HEADERS)
        assert resp.status_code == 200, resp.text
        assert resp.json()["created_new"] is True


# ---------------------------------------------------------------- offers

BAD_OFFERS: list[Any] = [
    {},  # no trade_offer_id
    {"state": "Active"},
    {"trade_offer_id": None},
    {"trade_offer_id": 8189748113},  # a number, not a string
    {"trade_offer_id": ""},
    {"trade_offer_id": "abc"},
    {"trade_offer_id": "81897481a3"},
    {"trade_offer_id": "123456789012345678901"},  # 21 digits
    {"trade_offer_id": "-1"},
    {"trade_offer_id": "1.5"},
    {"trade_offer_id": " 12"},
    {"trade_offer_id": "12\n"},
    {"trade_offer_id": "\uff11\uff12"},  # full-width digits
    {"trade_offer_id": "1", "state": "Bogus"},
    {"trade_offer_id": "1", "state": "accepted"},
    {"trade_offer_id": "1", "state": 0},
    {"trade_offer_id": "1", "state": 12},
    {"trade_offer_id": "1", "state": -3},
    {"trade_offer_id": "1", "state": True},
    {"trade_offer_id": "1", "state": None},
    {"trade_offer_id": "1", "state": 3.0},
    {"trade_offer_id": "1", "state": "Unknown(x)"},
    {"trade_offer_id": "1", "state": "Unknown()"},
    {"trade_offer_id": "1", "state": "unknown(12)"},
    {"trade_offer_id": "1", "state": "Unknown(12)\n"},
    {"trade_offer_id": "1", "state": ["Active"]},
    {"trade_offer_id": "1", "friend_steam_id": "123"},
    {"trade_offer_id": "1", "friend_steam_id": 76561198123456789},
]


@pytest.mark.parametrize("bad", BAD_OFFERS, ids=[orjson.dumps(o).decode() for o in BAD_OFFERS])
def test_bad_offer_in_an_upsert(client: TestClient, bad: Any) -> None:
    resp = client.post(
        f"{BASE}/atomic-upsert-trade-offer", json={"trade_offer_data": bad}, headers=HEADERS
    )
    body = rejected(resp)
    # Named as the bots sent it: the event's own name for it, `offer`, means nothing to them.
    assert body["error"].startswith("trade_offer_data"), body["error"]
    for detail in body.get("details") or ():
        assert detail["loc"][0] == "trade_offer_data", detail


@pytest.mark.parametrize("bad", BAD_OFFERS, ids=[orjson.dumps(o).decode() for o in BAD_OFFERS])
def test_bad_offer_in_a_document(client: TestClient, bad: Any) -> None:
    doc = {"trade_offers": [{"trade_offer_id": "5"}, bad]}
    rejected(client.post(BASE, json=doc, headers=HEADERS))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"trade_offer_data": None},
        {"trade_offer_data": []},
        {"trade_offer_data": "8189748113"},
        {"trade_offer_data": [{"trade_offer_id": "1"}]},
        {"offer": {"trade_offer_id": "1"}},
    ],
)
def test_upsert_without_an_offer_object(client: TestClient, body: Any) -> None:
    answer = rejected(client.post(f"{BASE}/atomic-upsert-trade-offer", json=body, headers=HEADERS))
    assert answer["error"].startswith("trade_offer_data"), answer["error"]


# ---------------------------------------------------------------- documents

BAD_DOCUMENTS: list[Any] = [
    {"account_steam_id": OTHER},  # another account's document
    {"account_steam_id": "123"},
    {"account_steam_id": 76561199027634480},
    {"trade_offers": {}},
    {"trade_offers": {"1": {"trade_offer_id": "1"}}},
    {"trade_offers": "none"},
    {"trade_offers": 3},
    {"trade_offers": [1, 2]},
    {"trade_offers": [None]},
    {"trade_offers": [{"trade_offer_id": "1"}, {"trade_offer_id": "1"}]},  # the same id twice
    {"negotiations": []},
    {"negotiations": [{"friend_steam_id": FRIEND}]},
    {"negotiations": "x"},
    {"negotiations": 1},
    {"negotiations": {"123": {}}},  # not a SteamID64 as the key
    {"negotiations": {FRIEND: []}},
    {"negotiations": {FRIEND: "x"}},
    {"negotiations": {FRIEND: {"friend_steam_id": OTHER}}},  # under the wrong key
]


@pytest.mark.parametrize(
    "bad", BAD_DOCUMENTS, ids=[orjson.dumps(d).decode() for d in BAD_DOCUMENTS]
)
def test_bad_document(client: TestClient, bad: Any) -> None:
    rejected(client.post(BASE, json=bad, headers=HEADERS))


def test_document_mismatch_says_so(client: TestClient) -> None:
    body = rejected(client.post(BASE, json={"account_steam_id": OTHER}, headers=HEADERS))
    assert body["code"] == "account_mismatch"
    assert OTHER in body["error"]


@pytest.mark.parametrize(
    "record", [{"friend_steam_id": OTHER}, {"friend_steam_id": "1"}, {"friend_steam_id": 5}]
)
def test_bad_friend_record(client: TestClient, record: Any) -> None:
    rejected(client.put(f"{BASE}/friend/{FRIEND}", json=record, headers=HEADERS))


# ---------------------------------------------------------------- bodies that are not objects

WRITE_PATHS = [
    ("POST", BASE),
    ("POST", f"{BASE}/atomic-upsert-trade-offer"),
    ("PUT", f"{BASE}/friend/{FRIEND}"),
    ("POST", f"{BASE}/remove-friends"),
]
NOT_OBJECTS = [
    b"",
    b"{",
    b"hello",
    b"{'a': 1}",
    b'{"a": 1,}',
    b"\xff\xfe\x00",
    b"[]",
    b'[{"trade_offer_id": "1"}]',
    b'"text"',
    b"17",
    b"null",
    b"true",
    b'{"a": NaN}',
    # A lone surrogate is let through (see the test below), nothing else with it.
    b'{"a": "\\ud83d", "b": NaN}',
    b'{"a": "\\ud83d",}',
    b'{"a": "\\ud83d", "b": 18446744073709551616}',
    # json.loads reads 1e400 as inf, which orjson would have stored as null.
    b'{"a": "\\ud83d", "b": 1e400}',
    b'{"a": "\\ud83d", "b": -1e400}',
    b'["\\ud83d"]',
]


@pytest.mark.parametrize(("method", "path"), WRITE_PATHS, ids=[p for _, p in WRITE_PATHS])
@pytest.mark.parametrize("raw", NOT_OBJECTS, ids=[repr(r) for r in NOT_OBJECTS])
def test_body_that_is_not_a_json_object(
    client: TestClient, method: str, path: str, raw: bytes
) -> None:
    headers = {**HEADERS, "Content-Type": "application/json"}
    rejected(client.request(method, path, content=raw, headers=headers))


def test_a_lone_surrogate_from_a_cut_emoji_is_kept_as_a_replacement_character(
    app_client: TestClient,
) -> None:
    """Node writes half an emoji as "\\ud83d" and the legacy service took it: refusing
    it would make every later save of the whole document fail."""
    friend = "76561198123456780"
    raw = b'{"state": "x", "messages": [{"text": "deal \\ud83d"}, {"text": "ok \\ud83d\\ude00"}],'
    raw += b' "\\udc00key": 1}'
    headers = {**HEADERS, "Content-Type": "application/json"}
    put = app_client.put(f"{BASE}/friend/{friend}", content=raw, headers=headers)
    assert put.status_code == 200, put.text
    record = app_client.get(BASE, headers=HEADERS).json()["data"]["negotiations"][friend]
    assert record["messages"] == [{"text": "deal \ufffd"}, {"text": "ok \U0001f600"}]
    assert record["\ufffdkey"] == 1


def test_a_body_nested_deeper_than_the_log_can_encode_is_400(client: TestClient) -> None:
    """Refused before the log: deeper than orjson encodes, it failed its commit batch
    (a 500 for it and for every write staged with it)."""
    deep = "[" * 300 + "]" * 300
    offer = '{"trade_offer_data": {"trade_offer_id": "1", "x": ' + deep + "}}"
    bodies = [
        ("POST", BASE, '{"x": ' + deep + "}"),
        ("POST", f"{BASE}/atomic-upsert-trade-offer", offer),
        ("PUT", f"{BASE}/friend/{FRIEND}", '{"messages": ' + deep + "}"),
    ]
    headers = {**HEADERS, "Content-Type": "application/json"}
    for method, path, raw in bodies:
        resp = client.request(method, path, content=raw.encode(), headers=headers)
        assert rejected(resp)["code"] == "too_deep", path


# ---------------------------------------------------------------- remove-friends


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"friend_steam_ids": None},
        {"friend_steam_ids": FRIEND},
        {"friend_steam_ids": {"a": FRIEND}},
        {"friend_steam_ids": [76561198123456789]},
        {"friend_steam_ids": ["123"]},
        {"friend_steam_ids": [FRIEND, "7656119812345678x"]},
        {"friend_steam_ids": [FRIEND, None]},
        {"friend_steam_ids": [[FRIEND]]},
        {"friend_ids": [FRIEND]},
    ],
)
def test_remove_friends_with_bad_ids(client: TestClient, body: Any) -> None:
    err = rejected(client.post(f"{BASE}/remove-friends", json=body, headers=HEADERS))
    assert "friend_steam_ids" in err["error"]
    if "friend_steam_ids" not in body:
        assert "required" in err["error"]


# ---------------------------------------------------------------- query parameters


@pytest.mark.parametrize(
    "query",
    ["from_version=-1", "from_version=x", "from_version=1.5", "limit=0",
     "limit=1001", "limit=-5", "limit=ten", "from_version=",
     # "²" and "٣" pass str.isdigit(); int() refuses the first (it was a 500).
     "from_version=%C2%B2", "limit=%C2%B2", "from_version=%D9%A3", "limit=%EF%BC%95"],
)  # fmt: skip
def test_bad_events_query(client: TestClient, query: str) -> None:
    rejected(client.get(f"{BASE}/events?{query}", headers=HEADERS), 400, "bad_query")


# ---------------------------------------------------------------- sizes


def test_17_mib_body_with_content_length_is_413(client: TestClient) -> None:
    raw = b'{"pad": "' + b"x" * (17 * MIB) + b'"}'
    for method, path in WRITE_PATHS:
        resp = client.request(method, path, content=raw, headers=HEADERS)
        body = rejected(resp, 413, "payload_too_large")
        assert body["details"] == {"limit": 16 * MIB}


def test_17_mib_body_chunked_without_content_length_is_413(client: TestClient) -> None:
    chunk = b"x" * MIB

    def stream() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(17):
            yield chunk
        yield b'"}'

    for method, path in WRITE_PATHS:
        seen: dict[str, Any] = {}
        resp = client.request(method, path, content=stream(), headers=HEADERS)
        seen.update(resp.request.headers)
        assert "content-length" not in seen
        assert seen.get("transfer-encoding") == "chunked"
        rejected(resp, 413, "payload_too_large")


def big_document(size: int) -> dict[str, Any]:
    """A document of about `size` bytes of JSON: friends with many messages, offers."""
    negotiations: dict[str, Any] = {}
    friend = 76561198000000000
    while len(orjson.dumps(negotiations)) < size:
        friend += 1
        negotiations[str(friend)] = {
            "friend_steam_id": str(friend),
            "state": "awaiting_reply",
            "language": {"code": "en", "confidence": 0.93} if friend % 2 else None,
            "messages": [
                {"from": "them" if i % 2 else "us", "text": f"message {i} " + "é✓" * 40,
                 "timestamp": str(1_700_000_000 + i)}
                for i in range(200)
            ],
            "inventory": [{"classid": str(i), "quantity": i} for i in range(20)],
            "followUpCount": friend % 5,
        }  # fmt: skip
    offers = [
        {"trade_offer_id": str(9_000_000_000 + i), "state": "Active", "items_to_give": [],
         "items_to_receive": [{"assetid": str(i)}], "updated_at": f"{1_700_000_000 + i}"}
        for i in range(50)
    ]  # fmt: skip
    return {
        "account_steam_id": ACCOUNT,
        "account_username": "big",
        "our_inventory": [{"classid": str(i)} for i in range(500)],
        "trade_offers": offers,
        "negotiations": negotiations,
    }


def test_3_mib_document_is_accepted_and_read_back(
    app_client: TestClient, module_settings: Settings
) -> None:
    doc = big_document(3 * MIB)
    raw = orjson.dumps(doc)
    assert 3 * MIB <= len(raw) < 4 * MIB
    before = log_length(module_settings)
    resp = app_client.post(BASE, content=raw, headers=HEADERS)
    assert resp.status_code == 200, resp.text[:500]
    saved = resp.json()
    assert saved["projected"] is True
    assert saved["negotiations_count"] == len(doc["negotiations"])
    assert log_length(module_settings) == before + 1

    got = app_client.get(BASE, headers=HEADERS).json()
    assert got["version"] == saved["version"]
    data = got["data"]
    for key in ("account_steam_id", "account_username", "our_inventory", "negotiations"):
        assert data[key] == doc[key], key
    assert data["trade_offers"] == doc["trade_offers"]  # already in index order
    assert orjson.dumps(data["negotiations"]) == orjson.dumps(doc["negotiations"])


def test_body_limit_is_the_setting(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    limit = 64 * 1024
    settings = make_settings(api_keys=KEY, max_body_bytes=limit, projection_wait_ms=0)
    with serving(settings, projectors=()) as c:
        head = b'{"account_username": "'
        pad = limit - len(head) - 2
        fits = head + b"x" * pad + b'"}'
        assert len(fits) == limit
        resp = c.post(BASE, content=fits, headers=HEADERS)
        assert resp.status_code == 200, resp.text[:300]
        over = head + b"x" * (pad + 1) + b'"}'
        body = rejected(c.post(BASE, content=over, headers=HEADERS), 413, "payload_too_large")
        assert body["details"] == {"limit": limit}
        assert log_length(settings) == 1
