"""Snapshot files: `negotiations/<steamId>.json`, the legacy format, and reading them back.

A snapshot is the account's document as orjson indents it (2 spaces, as the
legacy service wrote it) with the applied `version` as the document's own
`version` field: exactly the document GET answers. The fold's offer scores that
the document cannot give back (offers without a readable `updated_at` are
scored by their event's time) are kept in the inode's tag (tags.py), written and
put in place with the file. A snapshot without a current tag is in the layout
before tags, with those scores in a reserved last key (reserved_key.py).

Readers never parse more than they must: the version line is found by
searching from the end. Writing snapshots (atomically, durably) is
snapshot_writes.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import compress, count, repeat
from operator import is_not
from pathlib import Path
from typing import Any, cast

import orjson

from eventlog._exceptions import CorruptSnapshot
from eventlog.settings import Settings

from .atomic import read_tagged
from .fold import Fold
from .fragments import Parts, unchanged_ends
from .reserved_key import RESERVED, embed, restore, split
from .tags import make_tag, read_scores, tag_version
from .times import offer_score

__all__ = [
    "RESERVED",
    "Memo",
    "current_tag",
    "decode",
    "encode",
    "foreign",
    "load_snapshot",
    "load_snapshot_file",
    "read_document",
    "read_document_bytes",
    "read_snapshot",
    "snapshot_file",
    "snapshot_path",
    "version_of",
]

_VERSION = re.compile(rb'\n  "version": ([0-9]+)[,\n]')


def snapshot_path(settings: Settings, account: str) -> Path:
    return settings.snapshot_dir / f"{account}.json"


def snapshot_file(directory: str, account: str) -> str:
    """`snapshot_path` in the snapshot directory given as text (the writes' hot path)."""
    return f"{directory}/{account}.json"


@dataclass(slots=True)
class Memo:
    """What encoding an account's snapshot keeps for its next write.

    The fold shares unchanged objects between versions, so with a memo only what
    changed since the last write is examined and encoded again.
    """

    # The offers at the last write and, in their places, each one's score if it must
    # be stored (None: the offer gives it back). The fold never scores an offer again
    # without making a new offer object, so an offer found again keeps its entry.
    offers: list[dict[str, Any]] = field(default_factory=list)
    stored: list[int | None] = field(default_factory=list)
    parts: Parts = field(default_factory=Parts)


def _stored(offer: dict[str, Any], score: int) -> int | None:
    """`score` if `offer_score` cannot derive it from the offer (it fell back to the
    event time; a derivable score ignores the fallback), else None."""
    return score if offer_score(offer, score + 1) != score else None


def _extra_scores(fold: Fold, memo: Memo | None) -> dict[str, int]:
    """Scores `offer_score` cannot re-derive from the offer, by offer id in offer order.
    With a memo only the offers between the first and last change are looked at (as
    fragments.py does); it then holds exactly the document's offers."""
    scores = fold.scores
    offers = list(fold.doc.get("trade_offers") or ())
    if memo is not None and len(scores) != len(offers):
        # Two offers with one id (never validated in, but a log is data): an upsert of
        # one rescores the other too, so the memo's rule does not hold. Start it again.
        memo.offers, memo.stored, memo = [], [], None
    if memo is None:
        stored = [_stored(o, scores[o["trade_offer_id"]]) for o in offers]
    else:
        old, before = memo.offers, memo.stored
        head, tail = unchanged_ends(offers, old)
        n, m = len(offers), len(old)
        known = dict(zip(map(id, old[head : m - tail]), before[head : m - tail], strict=True))
        middle = [
            known[id(o)] if id(o) in known else _stored(o, scores[o["trade_offer_id"]])
            for o in offers[head : n - tail]
        ]
        stored = before[:head] + middle + before[m - tail :]
        memo.offers, memo.stored = offers, stored
    at = compress(count(), map(is_not, stored, repeat(None)))  # (in C: most are None)
    return {offers[i]["trade_offer_id"]: cast(int, stored[i]) for i in at}


def encode(
    fold: Fold, memo: Memo | None = None, *, tagged: bool = True
) -> tuple[bytes, bytes | None]:
    """A Fold's snapshot bytes and tag (`memo`: the account's, kept between writes).
    Untagged (`tagged` False: the filesystem takes no tags; or scores too many for a
    tag; or a document with a `_tradelog` key of its own), the scores the tag would
    hold go in the reserved key, and the tag is None."""
    body = doc = fold.doc
    extra = _extra_scores(fold, memo)
    # A client's own `_tradelog` key takes the layout before tags too: a tagged file
    # never has that key, so one that lost its tag (a copy without attributes) is
    # never read as holding the reserved block.
    tag = make_tag(doc["version"], extra) if tagged and RESERVED not in doc else None
    if tag is None:
        body = embed(doc, extra)
    if memo is not None:
        body = memo.parts.doc(body)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2), tag


def version_of(raw: bytes) -> int | None:
    """The version line the projector writes (indented, top level), in `raw` or in a tail
    of a snapshot; None if there is none."""
    at = raw.rfind(b'\n  "version": ')
    match = _VERSION.match(raw, at) if at >= 0 else None
    return int(match.group(1)) if match else None


def current_tag(tag: bytes | None, version: int | None) -> bytes | None:
    """`tag` if it belongs to `version`, the one its snapshot holds, else None: the
    snapshot is in the layout before tags (tags.py)."""
    if tag is None or tag_version(tag) != version:
        return None
    return tag


def decode(raw: bytes, where: str, tag: bytes | None = None) -> Fold:
    """The Fold a snapshot (its bytes and tag) holds; CorruptSnapshot if it is no
    snapshot tradelog wrote."""
    tag = current_tag(tag, version_of(raw))
    try:
        if tag is None:
            body, meta = split(raw)
        else:
            body, meta = raw, {"scores": read_scores(tag, where)}
        doc = orjson.loads(body)
    except (orjson.JSONDecodeError, ValueError) as e:
        raise CorruptSnapshot(where, f"not JSON: {e}") from e
    version = doc.get("version") if isinstance(doc, dict) else None
    if type(version) is not int or version < 1:
        raise CorruptSnapshot(where, "no applied version: not written by a projector")
    if meta is not None and not isinstance(meta, dict):
        raise CorruptSnapshot(where, f"{RESERVED} is not an object")
    try:
        if tag is None:
            doc = restore(doc, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptSnapshot(where, f"malformed {RESERVED}: {e!r}") from e
    extra: dict[str, int] = (meta or {}).get("scores") or {}
    scores: dict[str, int] = {}
    try:
        for offer in doc.get("trade_offers") or ():
            oid = offer["trade_offer_id"]
            scores[oid] = extra[oid] if oid in extra else offer_score(offer, 0)
    except (KeyError, TypeError) as e:
        raise CorruptSnapshot(where, f"malformed trade_offers: {e!r}") from e
    return Fold(doc, scores)


def read_snapshot(settings: Settings, account: str) -> Fold | None:
    """The account's projected Fold; None if it has no snapshot (nothing applied yet)."""
    return load_snapshot(settings, account)[0]


def load_snapshot(settings: Settings, account: str) -> tuple[Fold | None, int]:
    """The account's projected Fold (None if it has none) and its snapshot's size."""
    return load_snapshot_file(snapshot_path(settings, account))


def load_snapshot_file(path: Path) -> tuple[Fold | None, int]:
    """The Fold a snapshot file holds (None if there is none) and the file's size.

    A legacy file in its place (the data dir the legacy service used) holds no projection
    yet: the account's first event replaces it, as GET and verify ignore it meanwhile."""
    read = read_tagged(path)
    if read is None:
        return None, 0
    raw, tag = read
    if version_of(raw) is None and foreign(raw):
        return None, len(raw)
    return decode(raw, str(path), tag), len(raw)


def foreign(raw: bytes) -> bool:
    """Whether `raw` is a JSON object with no applied version: no projection (a legacy
    file never imported), where a damaged snapshot is not JSON, or not an object."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and not (type(doc.get("version")) is int and doc["version"] > 0)


def read_document_bytes(settings: Settings, account: str) -> tuple[bytes | None, int]:
    """The document as JSON bytes (indented) and its version; (None, 0) if not projected.

    Made for the GET path: embed the bytes with `orjson.Fragment`, nothing is parsed
    unless an untagged snapshot's reserved key holds a client's own `_tradelog` key.
    """
    read = read_tagged(snapshot_path(settings, account))
    if read is None:
        return None, 0
    raw, tag = read
    version = version_of(raw)
    if version is None:
        return None, 0  # not a projection (e.g. a legacy file nobody imported)
    if current_tag(tag, version) is not None:
        return raw, version  # the document exactly
    try:
        body, meta = split(raw)
    except (orjson.JSONDecodeError, ValueError) as e:
        raise CorruptSnapshot(str(snapshot_path(settings, account)), str(e)) from e
    if meta is not None and "shadow" in meta:
        try:
            doc = restore(orjson.loads(body), meta)
        except (KeyError, TypeError, ValueError) as e:  # (JSONDecodeError is a ValueError)
            where = str(snapshot_path(settings, account))
            raise CorruptSnapshot(where, f"malformed {RESERVED}: {e!r}") from e
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2), version
    return body, version


def read_document(settings: Settings, account: str) -> tuple[dict[str, Any] | None, int]:
    """The document and its version; (None, 0) if the account is not projected."""
    body, version = read_document_bytes(settings, account)
    if body is None:
        return None, 0
    try:
        doc: dict[str, Any] = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise CorruptSnapshot(str(snapshot_path(settings, account)), f"not JSON: {e}") from e
    return doc, version
