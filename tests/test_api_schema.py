"""schemathesis against the API's own /openapi.json: generated requests (valid and
invalid, derandomized, 25 per operation) never get a 5xx. The app runs in phase 1,
file-only, with no projector, no projection wait and no fsync, so it is quick: writes answer
`projected: false` at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.app import create_app
from api.openapi import openapi
from eventlog.settings import Settings
from tests.procs.api_harness import HEADERS, KEY, log_length

schema = schemathesis.openapi.from_dict(openapi())


@pytest.fixture
def api_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(api_keys=KEY, projection_wait_ms=0, fsync="off")


@pytest.fixture
def api_app(api_settings: Settings) -> Iterator[Starlette]:
    """The app; schemathesis starts its lifespan on the first request and keeps it
    until shut down here (which closes the writer)."""
    try:
        yield create_app(api_settings)
    finally:
        shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, api_app: Starlette) -> None:
    case.call_and_validate(app=api_app, headers=HEADERS, checks=[not_a_server_error])


def test_the_schema_is_what_the_app_serves(api_app: Starlette) -> None:
    with TestClient(api_app) as client:
        resp = client.get("/openapi.json", headers=HEADERS)
    assert resp.status_code == 200
    assert resp.json() == openapi()
    assert len(list(schema.get_all_operations())) == 14


def test_a_generated_case_can_write(api_app: Starlette, api_settings: Settings) -> None:
    """The cases reach the app and its log: a valid upsert built from the schema."""
    op = schema["/negotiations/{steamId}/atomic-upsert-trade-offer"]["POST"]
    case = op.Case(
        path_parameters={"steamId": "76561199027634480"},
        body={"trade_offer_data": {"trade_offer_id": "1", "state": 3}},
    )
    resp = case.call(app=api_app, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 1
    assert resp.json()["projected"] is False  # no projector, no wait
    assert log_length(api_settings) == 1


def test_the_schema_is_valid_openapi() -> None:
    """Its schemas are pydantic's JSON Schema 2020-12, which OpenAPI 3.1 speaks (and 3.0
    does not: a client generated from it would choke on "type": "null")."""
    validate(openapi())
