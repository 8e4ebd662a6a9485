"""Request bodies as JSON, with the one leniency the bots' client needs.

Node's JSON.stringify writes a lone UTF-16 surrogate (half an emoji, left by
cutting a chat message to length) as an escape such as "\\ud83d", and the
legacy service's JSON.parse took it. orjson refuses it, and the bots save whole
documents: one such message would make every later save of the account a 400,
for good. Such a body is parsed by the standard library instead and each lone
surrogate becomes U+FFFD: it cannot be stored as it is (the log and both
projections are UTF-8), and a replacement character is what any UTF-8 reader
would show of it. Everything else orjson refuses stays refused.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from eventlog._exceptions import InvalidInput

__all__ = ["parse_body"]

_LONE = re.compile("[\ud800-\udfff]")  # json.loads pairs proper pairs: what is left is lone


def parse_body(body: bytes) -> Any:
    """The body's JSON; InvalidInput (invalid_json) if it is not JSON tradelog can store."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        fixed = _with_lone_surrogates(body)
        if fixed is None:
            raise InvalidInput(f"request body is not valid JSON: {e}", code="invalid_json") from e
        return fixed


def _with_lone_surrogates(body: bytes) -> Any:
    """The body parsed with its lone surrogates replaced; None if that is not what was
    wrong with it (so orjson's own message is the answer)."""
    if b"\\u" not in body:
        return None
    try:
        value = json.loads(body, parse_constant=_refuse, parse_float=_finite)
    except (ValueError, RecursionError):
        return None
    fixed = _replace(value)
    try:
        orjson.dumps(fixed)  # what orjson cannot store either (a 65-bit integer) stays out
    except orjson.JSONEncodeError:
        return None
    return fixed


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    # json.loads reads 1e400 as inf, which orjson refuses to parse but encodes as null:
    # let through, the client's number would have been stored as null.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is infinity when parsed as a double")
    return value


def _replace(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_LONE.sub("\ufffd", k): _replace(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v) for v in value]
    return value
