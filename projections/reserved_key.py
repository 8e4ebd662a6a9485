"""The snapshot layout before tags: offer scores in a reserved last top-level key.

Written where a snapshot cannot be tagged (tags.py) and read in snapshots written
before tags: the scores the document cannot give back are kept under one
reserved last key, `_tradelog`, which readers strip. A client's own `_tradelog`
key is moved into that block (`shadow`) and put back in place, so no client
field is ever lost. A top-level key is the only place a line of the indented
file starts with exactly two spaces and a quote, so the block is found by
searching from the end.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["RESERVED", "embed", "restore", "split"]

RESERVED = "_tradelog"
_LAST_KEY = b'\n  "'
_RESERVED_KEY = b'"_tradelog": '


def embed(doc: dict[str, Any], scores: dict[str, int]) -> dict[str, Any]:
    """`doc` with the reserved block last (`doc` itself if it needs none)."""
    if not scores and RESERVED not in doc:
        return doc
    meta: dict[str, Any] = {}
    if scores:
        meta["scores"] = scores
    if RESERVED in doc:
        meta["shadow"] = {"at": list(doc).index(RESERVED), "value": doc[RESERVED]}
        body = {k: v for k, v in doc.items() if k != RESERVED}
    else:
        body = dict(doc)
    body[RESERVED] = meta
    return body


def split(raw: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """The document's bytes without the reserved block, and the block (None if absent);
    ValueError (orjson's included) if the block is not JSON."""
    at = raw.rfind(_LAST_KEY)
    if at < 0 or not raw.startswith(_RESERVED_KEY, at + 3):
        return raw, None
    meta = orjson.loads(raw[at + 3 + len(_RESERVED_KEY) : raw.rindex(b"}") - 1])
    # Drop the comma that ended the previous key's value, then close the object again.
    return raw[: at - 1] + b"\n}", meta


def restore(doc: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    """`doc` with a client's own `_tradelog` key put back in place, if it had one."""
    shadow = (meta or {}).get("shadow")
    if shadow is None:
        return doc
    items = list(doc.items())
    items.insert(shadow["at"], (RESERVED, shadow["value"]))
    return dict(items)
