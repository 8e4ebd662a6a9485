"""The OpenAPI id pattern states exactly the rule the server applies (Guarantee 8)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from api.patterns import STEAM_ID_PATTERN, digits_between
from eventlog.events import STEAM_ID_MAX, STEAM_ID_MIN

_STEAM = re.compile(STEAM_ID_PATTERN)


@given(st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=999))
def test_a_range_regex_matches_exactly_the_numbers_in_it(lo: int, hi: int) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    rx = re.compile(f"^(?:{digits_between(f'{lo:03d}', f'{hi:03d}')})$")
    assert [n for n in range(1000) if rx.match(f"{n:03d}")] == list(range(lo, hi + 1))


@given(st.integers(min_value=STEAM_ID_MIN - 10**6, max_value=STEAM_ID_MAX + 10**6))
def test_the_steam_id_pattern_is_the_range(n: int) -> None:
    assert bool(_STEAM.match(str(n))) == (STEAM_ID_MIN <= n <= STEAM_ID_MAX)


def test_the_steam_id_pattern_ends_and_other_lengths() -> None:
    for n in (STEAM_ID_MIN, STEAM_ID_MAX):
        assert _STEAM.match(str(n))
    for text in (str(STEAM_ID_MIN - 1), str(STEAM_ID_MAX + 1), "7656119802763448", "x" * 17):
        assert not _STEAM.match(text)
