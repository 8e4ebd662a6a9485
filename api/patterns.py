"""The regexes the OpenAPI schema states for ids: exactly the rules the server applies.

A range of equal-length decimal strings as a regex (`digits_between`), so the
schema says "a SteamID64 from STEAM_ID_MIN to STEAM_ID_MAX" instead of "any 17
digits", and clients (and tests generated from the schema) see the real rule.
"""

from __future__ import annotations

from eventlog.events import STEAM_ID_MAX, STEAM_ID_MIN

__all__ = ["STEAM_ID_PATTERN", "digits_between"]


def _group(regex: str) -> str:
    return f"(?:{regex})" if "|" in regex else regex


def _digit(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def _any(n: int) -> str:
    return "[0-9]" if n == 1 else f"[0-9]{{{n}}}"


def digits_between(lo: str, hi: str) -> str:
    """A regex for exactly the decimal strings of len(lo) digits from lo to hi."""
    n = len(lo)
    common = next((i for i in range(n) if lo[i] != hi[i]), n)
    if common == n:
        return lo
    if common:
        return lo[:common] + _group(digits_between(lo[common:], hi[common:]))
    if lo == "0" * n and hi == "9" * n:
        return _any(n)
    first, last = int(lo[0]), int(hi[0])
    if n == 1:
        return _digit(first, last)
    parts = [lo[0] + _group(digits_between(lo[1:], "9" * (n - 1)))]
    if last - first > 1:
        parts.append(_digit(first + 1, last - 1) + _any(n - 1))
    parts.append(hi[0] + _group(digits_between("0" * (n - 1), hi[1:])))
    return "|".join(parts)


# Exactly the SteamID64s the API accepts (DESIGN Guarantee 8): 17 digits from
# STEAM_ID_MIN to STEAM_ID_MAX, so the schema tells clients (and generated tests)
# the rule the server applies instead of "any 17 digits".
STEAM_ID_PATTERN = f"^(?:{digits_between(str(STEAM_ID_MIN), str(STEAM_ID_MAX))})$"
