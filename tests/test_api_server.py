"""The API as it runs: a real `tradelog serve` (uvicorn) with a real `tradelog
project file` beside it, driven with httpx over TCP: read-your-writes across
processes, 80 concurrent upserts on one account with no lost update, optimistic
concurrency under a race, and the body limit with and without Content-Length."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.procs.api_harness import (
    FRIEND,
    HEADERS,
    KEY2,
    Server,
    _wait_for,
    account_id,
    assert_error,
)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("api-server")
    srv = Server(root / "data")
    try:
        srv.start()
    except BaseException:
        srv.stop()
        print(srv.logs())
        raise
    try:
        yield srv
    finally:
        codes = srv.stop()
    # A clean stop: the API shuts down gracefully and the projector finishes its batch;
    # both exit 0, as a supervisor (systemd) expects of a requested stop.
    assert codes == [0, 0], (codes, srv.logs())
    assert "Traceback" not in srv.logs(), srv.logs()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as c:
        yield c


def events_of(client: httpx.Client, account: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = 1
    while True:
        page = client.get(f"/negotiations/{account}/events?from_version={start}&limit=1000")
        assert page.status_code == 200, page.text
        body = page.json()
        out += body["events"]
        if not body["events"]:
            return out
        start = body["next_from_version"]


def test_health_and_keys(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as bare:
        resp = bare.get("/health")
        assert resp.status_code == 200
        assert resp.json()["status"] == "ok" and resp.json()["service"] == "tradelog"
        assert_error(bare.get(f"/negotiations/{account_id(0)}"), 401, "unauthorized")
        assert_error(bare.get("/metrics", headers={"X-API-Key": "nope"}), 401, "unauthorized")
        assert bare.get("/ready", headers={"X-API-Key": KEY2}).status_code == 200


def test_read_your_writes(client: httpx.Client) -> None:
    account = account_id(1)
    base = f"/negotiations/{account}"
    for i in range(15):
        oid = str(1000 + i)
        resp = client.post(
            f"{base}/atomic-upsert-trade-offer",
            json={"trade_offer_data": {"trade_offer_id": oid, "state": 2, "n": i}},
        )
        assert resp.status_code == 200, resp.text
        written = resp.json()
        assert written["projected"] is True, written
        assert written["version"] == 2 * i + 1
        got = client.get(base)  # at once: no wait, no retry
        assert got.status_code == 200
        assert got.headers["etag"] == f'"{written["version"]}"'
        data = got.json()["data"]
        assert data["version"] == written["version"]
        assert {o["trade_offer_id"]: o["n"] for o in data["trade_offers"]}[oid] == i

        resp = client.put(f"{base}/friend/{FRIEND}", json={"state": f"s{i}", "messages": [i]})
        assert resp.status_code == 200 and resp.json()["projected"] is True, resp.text
        data = client.get(base).json()["data"]
        assert data["negotiations"][FRIEND] == {"state": f"s{i}", "messages": [i]}

    doc = {"account_username": "whole", "trade_offers": [], "negotiations": {}}
    resp = client.post(base, json=doc)
    assert resp.status_code == 200 and resp.json()["projected"] is True
    data = client.get(base).json()["data"]
    assert data["account_username"] == "whole"
    assert data["trade_offers"] == [] and data["negotiations"] == {}
    assert data["version"] == 31


def test_other_routes(client: httpx.Client) -> None:
    account = account_id(2)
    client.post(
        f"/negotiations/{account}/atomic-upsert-trade-offer",
        json={"trade_offer_data": {"trade_offer_id": "1"}},
    )
    for path in ("/negotiations", "/negotiations/"):
        body = client.get(path).json()
        assert body["success"] is True and body["source"] == "file"
        assert body["accounts"] >= 1
    health = client.get(f"/negotiations/{account}/health").json()
    assert health["versions"]["log"] == health["versions"]["file"] == 1
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["projectors"]["file"]["heartbeat"]
    metrics = client.get("/metrics")
    assert "tradelog_events_appended_total" in metrics.text
    assert client.get("/openapi.json").json()["paths"]
    assert [e["version"] for e in events_of(client, account)] == [1]


Request = tuple[str, dict[str, Any], dict[str, str]]  # path, JSON body, extra headers


async def _concurrently(url: str, requests: list[Request]) -> list[httpx.Response]:
    """POST every request at once, each on its own connection; their answers.

    One AsyncClient per request: a single client's pool (httpcore) scans every
    connection for each request it assigns, which with 80 connections cost the
    client ~15 ms per request and measured the client, not the server.
    """
    tls = ssl.create_default_context()  # one, not one per client (each costs ~30 ms)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30, verify=tls)
            )
            for _ in requests
        ]
        # Open the connections first, so the writes arrive together, not behind TCP set-up.
        await asyncio.gather(*(c.get("/health") for c in clients))
        answers = await asyncio.gather(
            *(c.post(p, json=b, headers=h) for c, (p, b, h) in zip(clients, requests, strict=True))
        )
        return list(answers)


def test_80_concurrent_upserts_on_one_account(server: Server, client: httpx.Client) -> None:
    account = account_id(3)
    path = f"/negotiations/{account}/atomic-upsert-trade-offer"
    offers = [str(5_000_000_000 + i) for i in range(80)]
    reqs: list[Request] = [
        (path, {"trade_offer_data": {"trade_offer_id": o, "state": 2}}, {}) for o in offers
    ]
    # How fast is `bench http`'s upsert80 figure; here only what they answer counts.
    answers = asyncio.run(_concurrently(server.url, reqs))
    assert [a.status_code for a in answers] == [200] * 80, [a.text for a in answers][:3]
    bodies = [a.json() for a in answers]
    assert all(b["operation"] == "added" and b["projected"] is True for b in bodies)
    assert sorted(b["version"] for b in bodies) == list(range(1, 81))
    assert len({b["event_id"] for b in bodies}) == 80

    history = events_of(client, account)
    assert [e["version"] for e in history] == list(range(1, 81))
    assert sorted(e["data"]["offer"]["trade_offer_id"] for e in history) == offers
    assert {b["event_id"] for b in bodies} == {e["id"] for e in history}

    data = client.get(f"/negotiations/{account}").json()["data"]
    assert data["version"] == 80
    assert sorted(o["trade_offer_id"] for o in data["trade_offers"]) == offers


def test_80_concurrent_merges_into_one_offer_lose_nothing(
    server: Server, client: httpx.Client
) -> None:
    account = account_id(4)
    path = f"/negotiations/{account}/atomic-upsert-trade-offer"
    reqs: list[Request] = [
        (path, {"trade_offer_data": {"trade_offer_id": "77", f"field_{i}": i}}, {})
        for i in range(80)
    ]
    answers = asyncio.run(_concurrently(server.url, reqs))
    assert [a.status_code for a in answers] == [200] * 80
    operations = sorted(a.json()["operation"] for a in answers)
    assert operations == ["added"] + ["updated"] * 79
    [offer] = client.get(f"/negotiations/{account}").json()["data"]["trade_offers"]
    assert {k: v for k, v in offer.items() if k.startswith("field_")} == {
        f"field_{i}": i for i in range(80)
    }
    assert [e["version"] for e in events_of(client, account)] == list(range(1, 81))


def test_80_concurrent_writes_with_one_if_match_exactly_one_wins(
    server: Server, client: httpx.Client
) -> None:
    account = account_id(5)
    path = f"/negotiations/{account}/atomic-upsert-trade-offer"
    first = client.post(path, json={"trade_offer_data": {"trade_offer_id": "1"}})
    etag = first.headers["etag"]
    assert etag == '"1"'
    reqs: list[Request] = [
        (path, {"trade_offer_data": {"trade_offer_id": str(100 + i)}}, {"If-Match": etag})
        for i in range(80)
    ]
    answers = asyncio.run(_concurrently(server.url, reqs))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 79
    for a in answers:
        if a.status_code == 409:
            assert_error(a, 409, "version_conflict")
    assert [e["version"] for e in events_of(client, account)] == [1, 2]


def test_17_mib_bodies_are_refused_over_tcp(server: Server, client: httpx.Client) -> None:
    account = account_id(6)
    path = f"/negotiations/{account}"
    raw = b'{"pad": "' + b"x" * (17 * MIB) + b'"}'
    resp = client.post(path, content=raw)
    assert_error(resp, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(17):
            yield b"x" * MIB
        yield b'"}'

    resp = client.post(path, content=chunks())
    assert "content-length" not in resp.request.headers
    assert resp.request.headers["transfer-encoding"] == "chunked"
    assert_error(resp, 413, "payload_too_large")
    # Nothing was appended, and the server still answers.
    assert events_of(client, account) == []
    assert client.get(path).json()["created_new"] is True


def raw_request(server: Server, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One request written byte for byte (headers httpx would re-encode); status and JSON."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    reply = b"".join(chunks)
    status = int(reply.split(b" ", 2)[1])
    return status, orjson.loads(reply.split(b"\r\n\r\n", 1)[1])


def test_if_match_with_a_non_ascii_digit_is_400(server: Server, client: httpx.Client) -> None:
    account = account_id(7)
    # Latin-1 "\xb2" is "²": str.isdigit() says yes, int() says no (it was a 500).
    head = (
        f"PUT /negotiations/{account}/friend/{FRIEND} HTTP/1.1\r\nHost: x\r\n"
        f"X-API-Key: {HEADERS['X-API-Key']}\r\nContent-Type: application/json\r\n"
    ).encode() + b'If-Match: "\xb2"\r\n'
    status, body = raw_request(server, head, b"{}")
    assert status == 400, body
    assert body["success"] is False and body["code"] == "invalid_if_match"
    assert events_of(client, account) == []


def test_ready_turns_503_when_the_file_projector_is_killed(tmp_path: Path) -> None:
    """kill -9 of the projector: its heartbeat is still fresh, its process gone. Once a
    write waits for it, /ready says so at once; a new projector makes it ready again."""
    srv = Server(tmp_path / "data", env_extra={"TRADELOG_PROJECTION_WAIT_MS": "100"})
    try:
        srv.start()
        with httpx.Client(base_url=srv.url, headers=HEADERS, timeout=30) as client:
            assert client.get("/ready").status_code == 200
            projector = srv.procs[1]
            projector.kill()
            projector.wait()
            upsert = f"/negotiations/{account_id(7)}/atomic-upsert-trade-offer"
            resp = client.post(upsert, json={"trade_offer_data": {"trade_offer_id": "1"}})
            assert resp.status_code == 200 and resp.json()["projected"] is False
            ready = client.get("/ready")
            assert_error(ready, 503, "not_ready")
            assert ready.json()["projectors"]["file"]["running"] is False
            srv.procs.remove(projector)
            srv._spawn("project-file", "project", "file")
            _wait_for("ready again", lambda: client.get("/ready").status_code == 200, 30, srv.procs)
    finally:
        srv.stop()


def test_metrics_add_up_over_every_worker(tmp_path: Path) -> None:
    """With two workers each scrape reaches one of them; every scrape counts the writes of
    both (the writes and the scrapes come on connections of their own, spread by the kernel)."""
    srv = Server(tmp_path / "data", env_extra={"TRADELOG_WORKERS": "2"})
    name = 'tradelog_events_appended_total{type="TradeOfferUpserted"}'

    def appended() -> float:
        with httpx.Client(base_url=srv.url, headers=HEADERS, timeout=30) as c:
            text = c.get("/metrics").text
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(name))

    try:
        srv.start()
        upsert = f"/negotiations/{account_id(8)}/atomic-upsert-trade-offer"
        for i in range(20):
            with httpx.Client(base_url=srv.url, headers=HEADERS, timeout=30) as c:
                body = {"trade_offer_data": {"trade_offer_id": str(i + 1)}}
                assert c.post(upsert, json=body).status_code == 200
        assert [appended() for _ in range(8)] == [20.0] * 8
    finally:
        srv.stop()
