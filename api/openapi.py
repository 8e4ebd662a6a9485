"""The OpenAPI document, generated from the models in `models.py`."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .models import MODELS
from .patterns import STEAM_ID_PATTERN

__all__ = ["openapi"]

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


_STEAM = {"type": "string", "pattern": STEAM_ID_PATTERN}
_ERRORS = {
    code: {"description": text, "content": _json("ErrorAnswer")}
    for code, text in {
        "400": "bad input (nothing appended)",
        "401": "missing or wrong X-API-Key",
        "409": "If-Match / expected_version does not match (nothing appended)",
        "413": "body larger than the limit",
        "422": "Idempotency-Key already used for another write (nothing appended)",
        "503": "the log or Redis is unavailable, or (GET) the read projection is behind "
        "the log (projection_behind) or parked the account (account_parked), or its "
        "snapshot is a legacy file not imported yet (legacy_not_imported); nothing "
        "appended: retry",
    }.items()
}
_WRITE_HEADERS = [
    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
]


def _op(summary: str, answer: str, body: str | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": _json(answer)}, **_ERRORS},
        "security": [{"ApiKey": []}],
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
        op["parameters"] = list(_WRITE_HEADERS)
    op.update(extra)
    return op


def _plain(summary: str, media_type: str, schema_type: str) -> dict[str, Any]:
    """A keyed GET answering a document of no model of ours (metrics text, this schema)."""
    content = {media_type: {"schema": {"type": schema_type}}}
    return {
        "summary": summary,
        "security": [{"ApiKey": []}],
        "responses": {"200": {"description": "OK", "content": content}, "401": _ERRORS["401"]},
    }


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STEAM}


def openapi() -> dict[str, Any]:
    _, schemas = models_json_schema([(m, "validation") for m in MODELS], ref_template=_REF)
    account = _param("steamId")
    friend = _param("friendSteamId")
    events_query = [
        {"name": "from_version", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
    ]
    paths: dict[str, Any] = {
        "/negotiations/{steamId}": {
            "parameters": [account],
            "get": _op("The account's document", "DocumentAnswer"),
            "post": _op("Save the whole document", "SaveAnswer", "AccountDocument"),
        },
        "/negotiations/{steamId}/atomic-upsert-trade-offer": {
            "parameters": [account],
            "post": _op(
                "Add or merge one trade offer", "UpsertTradeOfferAnswer", "UpsertTradeOfferRequest"
            ),
        },
        "/negotiations/{steamId}/friend/{friendSteamId}": {
            "parameters": [account, friend],
            "put": _op(
                "Replace one friend's negotiation", "UpsertFriendAnswer", "FriendNegotiation"
            ),
            "delete": _op(
                "Remove one friend", "DeleteFriendAnswer", parameters=list(_WRITE_HEADERS)
            ),
        },
        "/negotiations/{steamId}/remove-friends": {
            "parameters": [account],
            "post": _op("Remove friends", "RemoveFriendsAnswer", "RemoveFriendsRequest"),
        },
        "/negotiations/{steamId}/events": {
            "parameters": [account],
            "get": _op("The account's events", "EventsAnswer", parameters=events_query),
        },
        "/negotiations/{steamId}/health": {
            "parameters": [account],
            "get": _op("The account in log, file and Redis", "AccountHealthAnswer"),
        },
        "/negotiations": {"get": _op("Totals over the read projection", "SummaryAnswer")},
        "/negotiations/": {"get": _op("Totals over the read projection", "SummaryAnswer")},
        "/health": {
            "get": {
                "summary": "Liveness (no key needed)",
                "responses": {"200": {"description": "OK", "content": _json("HealthAnswer")}},
            }
        },
        "/ready": {
            "get": {
                **_op("Readiness: log, Redis, projectors", "ReadyAnswer"),
                "responses": {
                    "200": {"description": "ready", "content": _json("ReadyAnswer")},
                    "503": {"description": "not ready", "content": _json("ReadyAnswer")},
                    "401": _ERRORS["401"],
                },
            }
        },
        "/metrics": {"get": _plain("Prometheus metrics", "text/plain", "string")},
        "/openapi.json": {"get": _plain("This OpenAPI document", "application/json", "object")},
    }
    return {
        # 3.1: its schemas are JSON Schema 2020-12, the dialect pydantic writes (3.0's
        # is another: no "type": "null", no patternProperties).
        "openapi": "3.1.0",
        "info": {"title": "tradelog", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
