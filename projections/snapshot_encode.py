"""Encoding a Fold as its snapshot: the document's bytes and the inode's tag.

An account is written again and again, one event apart, so its Memo keeps what
the last write worked out: the encoded parts of its big containers
(fragments.py) and which offers' scores the tag must hold. Only what changed
since is looked at again; the bytes are exactly a full encode's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress, count, repeat
from operator import is_not
from typing import Any, cast

import orjson

from .fold import Fold
from .fragments import Parts, reuse
from .reserved_key import RESERVED, embed
from .tags import make_tag
from .times import offer_score

__all__ = ["Memo", "encode"]


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
    With a memo only the offers between the first and last change are looked at
    (fragments.reuse); it then holds exactly the document's offers."""
    scores = fold.scores
    offers = list(fold.doc.get("trade_offers") or ())
    if memo is not None and len(scores) != len(offers):
        # Two offers with one id (never validated in, but a log is data): an upsert of
        # one rescores the other too, so the memo's rule does not hold. Start it again.
        memo.offers, memo.stored, memo = [], [], None

    def stored_of(offer: dict[str, Any]) -> int | None:
        return _stored(offer, scores[offer["trade_offer_id"]])

    if memo is None:
        stored = [stored_of(o) for o in offers]
    else:
        stored = reuse(offers, memo.offers, memo.stored, stored_of)
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
