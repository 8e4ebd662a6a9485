"""Snapshot parts kept between writes give exactly the bytes of a full encode."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import fragments
from projections.fragments import Parts
from tests.strategies import json_values

_ELEMENTS = st.one_of(
    st.dictionaries(st.text(max_size=4), json_values(), max_size=4),
    st.lists(json_values(), max_size=4),
    json_values(),
)


def full(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


@settings(max_examples=60, deadline=None)
@given(
    first=st.lists(_ELEMENTS, min_size=0, max_size=20),
    named=st.dictionaries(st.text(max_size=5), _ELEMENTS, max_size=20),
    changes=st.lists(st.tuples(st.integers(0, 40), _ELEMENTS), max_size=12),
)
def test_parts_encode_exactly_as_a_full_encode_through_any_changes(
    first: list[Any], named: dict[str, Any], changes: list[tuple[int, Any]]
) -> None:
    doc: dict[str, Any] = {"version": 1, "trade_offers": first, "negotiations": named}
    with pytest.MonkeyPatch.context() as patch:  # every container in parts, however small
        patch.setattr(fragments, "_MIN_ITEMS", 0)
        patch.setattr(fragments, "_MIN_DOC_ITEMS", 0)
        changed_through(doc, changes)


def changed_through(doc: dict[str, Any], changes: list[tuple[int, Any]]) -> None:
    parts = Parts()
    assert orjson.dumps(parts.doc(doc), option=orjson.OPT_INDENT_2) == full(doc)
    for at, value in changes:
        # As the fold changes a document: new containers for what changed, the rest shared.
        offers = list(doc["trade_offers"])
        friends = dict(doc["negotiations"])
        if offers and at % 5 == 4:  # a removal: the elements after it move up
            del offers[at % len(offers)]
            friends.pop(next(iter(friends), ""), None)
        elif offers and at % 3:
            offers[at % len(offers)] = value
        else:
            offers.append(value)
        friends[f"f{at}"] = value
        doc = {**doc, "trade_offers": offers, "negotiations": friends, "version": at}
        assert orjson.dumps(parts.doc(doc), option=orjson.OPT_INDENT_2) == full(doc)
    assert len(parts) <= len(doc["trade_offers"]) + len(doc["negotiations"])


def test_an_unchanged_element_is_encoded_once() -> None:
    offers = [{"trade_offer_id": str(i), "items": list(range(i % 7))} for i in range(70)]
    parts = Parts()
    before = parts.doc({"trade_offers": offers})["trade_offers"]
    changed = [*offers[:69], {"trade_offer_id": "69", "state": "Accepted"}]
    after = parts.doc({"trade_offers": changed})["trade_offers"]
    assert all(a is b for a, b in zip(before[:69], after[:69], strict=True))
    assert after[69] is not before[69]
    assert len(parts) == 70  # the replaced offer's part is gone


def test_elements_moved_up_by_a_removal_are_not_encoded_again() -> None:
    offers = [{"trade_offer_id": str(i), "items": list(range(i % 7))} for i in range(70)]
    parts = Parts()
    before = parts.doc({"trade_offers": offers})["trade_offers"]
    after = parts.doc({"trade_offers": offers[1:]})["trade_offers"]
    assert all(a is b for a, b in zip(before[1:], after, strict=True))
    assert len(parts) == 69


def test_a_small_document_is_encoded_whole_and_keeps_nothing() -> None:
    parts = Parts()
    doc = {"trade_offers": [{"trade_offer_id": str(i)} for i in range(20)]}
    assert parts.doc(doc) is doc and len(parts) == 0
