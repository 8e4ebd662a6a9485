"""Re-encoding only what changed: a snapshot's big containers as pre-encoded parts.

A bot's document is mostly its offers and negotiations (hundreds of KB), and an
event changes one of them. The fold never changes an object in place: it makes
new ones for what changed and shares the rest between versions. So each element
of a top-level list or object (an offer, a friend's negotiation) is encoded once,
kept by identity, and embedded in the next encodings as an `orjson.Fragment`,
indented as orjson indents that depth, so the bytes are exactly a full encode's.
"""

from __future__ import annotations

import operator
from itertools import compress, count
from typing import Any

import orjson

__all__ = ["Parts", "unchanged_ends"]

_MIN_ITEMS = 8  # smaller containers are cheaper to encode again than to look up
_MIN_DOC_ITEMS = 64  # and a document with fewer elements in all is encoded whole
_DEPTH2 = b"\n    "  # an element of a top-level container sits two levels deep
_CONTAINERS = (dict, list)


class Parts:
    """One account's encoded elements, kept between its writes by container and position."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        # container key -> (its elements at the last write, their parts); holding the
        # elements keeps them alive, so an element that `is` one of them is unchanged.
        self._held: dict[str, tuple[list[Any], list[Any]]] = {}

    def __len__(self) -> int:
        return sum(len(parts) for _, parts in self._held.values())

    def doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with the elements of its big containers replaced by their parts.

        Only what the document holds now is kept for the next write; nothing is for a
        small document (its parts would cost more memory and time than they save).
        """
        big = [v for v in doc.values() if type(v) in _CONTAINERS and len(v) >= _MIN_ITEMS]
        if sum(len(v) for v in big) < _MIN_DOC_ITEMS:
            self._held = {}
            return doc
        held = self._held
        kept: dict[str, tuple[list[Any], list[Any]]] = {}
        out: dict[str, Any] = {}
        for key, value in doc.items():
            if type(value) is list and len(value) >= _MIN_ITEMS:
                elements = value
            elif type(value) is dict and len(value) >= _MIN_ITEMS:
                elements = list(value.values())
            else:
                out[key] = value
                continue
            parts = _parts(elements, held.get(key))
            kept[key] = (elements, parts)
            out[key] = parts if type(value) is list else dict(zip(value, parts, strict=True))
        self._held = kept
        return out


def _parts(elements: list[Any], before: tuple[list[Any], list[Any]] | None) -> list[Any]:
    """`elements` as parts. An event replaces, adds or moves an element or two (an
    upserted offer moves to its new place in score order), so the elements are
    compared with the last write's from both ends, in C (map), and only those between
    the first and the last difference are looked up by identity; what is not found
    is encoded."""
    old, held = before if before is not None else ([], [])
    n, m = len(elements), len(old)
    head, tail = unchanged_ends(elements, old)
    if head == n == m:
        return held
    window = elements[head : n - tail]
    # (`old` is alive, so its ids are its own.)
    by_id = dict(zip(map(id, old[head : m - tail]), held[head : m - tail], strict=True))
    middle: list[Any] = list(map(by_id.get, map(id, window)))
    for i, part in enumerate(middle):
        if part is None:
            value = window[i]
            if type(value) is dict or type(value) is list:
                raw = orjson.dumps(value, option=orjson.OPT_INDENT_2)
                middle[i] = orjson.Fragment(raw.replace(b"\n", _DEPTH2))
            else:
                middle[i] = value  # a scalar element is embedded as it is
    return held[:head] + middle + held[m - tail :]


def unchanged_ends(new: list[Any], old: list[Any]) -> tuple[int, int]:
    """How many leading and how many trailing elements `new` keeps from `old` (the very
    same objects, in the same places), never counting one twice."""
    head = _same(new, old)
    return head, min(_same(new[::-1], old[::-1]), len(new) - head, len(old) - head)


def _same(a: list[Any], b: list[Any]) -> int:
    """How many leading elements `a` and `b` share (the very same objects)."""
    return next(compress(count(), map(operator.is_not, a, b)), min(len(a), len(b)))
