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
from collections.abc import Callable
from itertools import compress, count, repeat
from typing import Any

import orjson

__all__ = ["Parts", "reuse"]

_MIN_ITEMS = 8  # smaller containers are cheaper to encode again than to look up
_MIN_DOC_ITEMS = 64  # and a document with fewer elements in all is encoded whole
_DEPTH2 = b"\n    "  # an element of a top-level container sits two levels deep
_CONTAINERS = (dict, list)
_MISSING = object()  # reuse: an element `old` lacks


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
    """`elements` as parts: the last write's where it had the very element, else encoded."""
    old, held = before if before is not None else ([], [])
    return reuse(elements, old, held, _part)


def _part(value: Any) -> Any:
    if type(value) is dict or type(value) is list:
        raw = orjson.dumps(value, option=orjson.OPT_INDENT_2)
        return orjson.Fragment(raw.replace(b"\n", _DEPTH2))
    return value  # a scalar element is embedded as it is


def reuse(new: list[Any], old: list[Any], held: list[Any], make: Callable[[Any], Any]) -> list[Any]:
    """What `held` holds for `old`'s elements, for `new`'s: `held[i]` for an element that
    is `old[i]`'s very object, `make(element)` for one `old` lacks.

    An event replaces, adds or moves an element or two (an upserted offer moves to its
    new place in score order), so the lists are compared from both ends, in C (map),
    and only the elements between the first and the last difference are looked up by
    identity (`old` is alive, so its ids are its own)."""
    n, m = len(new), len(old)
    head = _same(new, old)
    if head == n == m:
        return held
    tail = min(_same(new[::-1], old[::-1]), n - head, m - head)
    window = new[head : n - tail]
    known = dict(zip(map(id, old[head : m - tail]), held[head : m - tail], strict=True))
    middle = list(map(known.get, map(id, window), repeat(_MISSING)))
    for i, value in enumerate(middle):
        if value is _MISSING:
            middle[i] = make(window[i])
    return held[:head] + middle + held[m - tail :]


def _same(a: list[Any], b: list[Any]) -> int:
    """How many leading elements `a` and `b` share (the very same objects)."""
    return next(compress(count(), map(operator.is_not, a, b)), min(len(a), len(b)))
