"""Times as the fold reads them, in ms since the epoch: offers' scores, events' times.

An offer's `updated_at` orders the account's offers (the Redis index's score), in
whatever form the bots wrote it: ISO 8601, or unix seconds or ms as a number or
digits. An event's `ts` is the writer's RFC 3339 stamp. Both are parsed exactly,
never by a clock or float rounding, so every projection computes the same scores.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from math import floor
from typing import Any

from eventlog.records import StoredEvent

__all__ = ["event_ms", "offer_score"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DIGITS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Redis sorted-set scores are doubles: beyond 2**53 ms they round, and the Redis
# index would order offers differently from the fold. Such values are not times anyway.
_MAX_MS = 2**53 - 1


@lru_cache(maxsize=4096)  # a batch's events share one ts; offers repeat their times
def _iso_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the bots write UTC; a bare time means UTC
    return (moment - _EPOCH) // _MS


def offer_score(offer: dict[str, Any], fallback_ms: int) -> int:
    """The offer's index score: its `updated_at` in ms, else `fallback_ms`."""
    value = offer.get("updated_at")
    ms: int | None = None
    if isinstance(value, str):
        ms = _text_ms(value)
    else:
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                ms = _number_ms(Fraction(value))
            elif isinstance(value, float):
                # Exact arithmetic on the shortest decimal form: float seconds * 1000
                # can land 1 ms low, and scores must not depend on rounding.
                ms = _number_ms(Fraction(Decimal(repr(value))))
        except (ValueError, ArithmeticError):  # nan/inf
            pass
    return fallback_ms if ms is None else ms


@lru_cache(maxsize=4096)  # offers carry the same few times again and again
def _text_ms(value: str) -> int | None:
    """A string time in ms: digits are unix seconds (or ms), else ISO 8601; None if neither."""
    if not _DIGITS.fullmatch(value):
        ms = _iso_ms(value)
        return None if ms is None or abs(ms) > _MAX_MS else ms
    try:
        return _number_ms(Fraction(value))
    except (ValueError, ArithmeticError):  # huge digit strings
        return None


def _number_ms(number: Fraction) -> int | None:
    ms = floor(number * 1000) if number < 10**11 else floor(number)
    return None if abs(ms) > _MAX_MS else ms


def event_ms(event: StoredEvent) -> int:
    ms = _iso_ms(event.ts)
    if ms is None:  # the writer always stamps RFC 3339; anything else is a poison event
        raise ValueError(f"event {event.id} has an unreadable ts {event.ts!r}")
    return ms
