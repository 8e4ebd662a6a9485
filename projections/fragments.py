"""Re-encoding only what changed: a snapshot's big containers as pre-encoded parts.

A bot's document is mostly its offers and negotiations (hundreds of KB), and an
event changes one of them. The fold never changes an object in place: it makes
new ones for what changed and shares the rest between versions. So each element
of a top-level list or object (an offer, a friend's negotiation) is encoded once,
kept by identity, and embedded in the next encodings as an `orjson.Fragment`,
indented as orjson indents that depth, so the bytes are exactly a full encode's.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["Parts"]

_MIN_ITEMS = 8  # smaller containers are cheaper to encode again than to look up
_MIN_DOC_ITEMS = 64  # and a document with fewer elements in all is encoded whole
_DEPTH2 = b"\n    "  # an element of a top-level container sits two levels deep
_CONTAINERS = (dict, list)


class Parts:
    """One account's encoded elements, by object identity, kept between its writes."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # id -> (the object, kept so its id cannot be reused while cached; its part)
        self._seen: dict[int, tuple[Any, orjson.Fragment]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with the elements of its big containers replaced by their parts.

        Only what the document holds now is kept for the next write; nothing is for a
        small document (its parts would cost more memory and time than they save).
        """
        big = [v for v in doc.values() if type(v) in _CONTAINERS and len(v) >= _MIN_ITEMS]
        if sum(len(v) for v in big) < _MIN_DOC_ITEMS:
            self._seen = {}
            return doc
        seen = self._seen
        kept: dict[int, tuple[Any, orjson.Fragment]] = {}

        def part(value: Any) -> Any:
            if type(value) is not dict and type(value) is not list:
                return value
            held = seen.get(id(value))
            if held is None or held[0] is not value:
                raw = orjson.dumps(value, option=orjson.OPT_INDENT_2)
                held = (value, orjson.Fragment(raw.replace(b"\n", _DEPTH2)))
            kept[id(value)] = held
            return held[1]

        out: dict[str, Any] = {}
        for key, value in doc.items():
            if type(value) is list and len(value) >= _MIN_ITEMS:
                out[key] = [part(v) for v in value]
            elif type(value) is dict and len(value) >= _MIN_ITEMS:
                out[key] = {k: part(v) for k, v in value.items()}
            else:
                out[key] = value
        self._seen = kept
        return out
