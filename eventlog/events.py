"""The v1 event payloads and the input rules every command passes before the log.

Documents are open: only the fields named here are checked, everything else is
kept exactly as sent (the models validate; the client's dicts are what is
stored, with one normalisation: an offer state given as a number becomes its
name). Rules follow DESIGN Guarantee 8.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictStr,
    ValidationError,
)

from ._exceptions import InvalidInput

__all__ = [
    "OFFER_STATES",
    "check_steam_id",
    "normalize_state",
    "validate_document",
    "validate_friend_ids",
    "validate_negotiation",
    "validate_offer",
]

STEAM_ID_MIN = 76561197960265729
STEAM_ID_MAX = 76561202255233023

# ETradeOfferState, by number.
OFFER_STATES = {
    1: "Invalid",
    2: "Active",
    3: "Accepted",
    4: "Countered",
    5: "Expired",
    6: "Canceled",
    7: "Declined",
    8: "InvalidItems",
    9: "CreatedNeedsConfirmation",
    10: "CanceledBySecondFactor",
    11: "InEscrow",
}
_STATE_NAMES = frozenset(OFFER_STATES.values())
# ASCII digits and \Z: `\d` also matches other scripts' digits and `$` a trailing newline.
_UNKNOWN_STATE = re.compile(r"^Unknown\([0-9]{1,10}\)\Z")
_OFFER_ID = re.compile(r"^[0-9]{1,20}\Z")
_STEAM_ID = re.compile(r"^[0-9]{17}\Z")


def _steam_id(value: str) -> str:
    if not _STEAM_ID.match(value) or not STEAM_ID_MIN <= int(value) <= STEAM_ID_MAX:
        raise ValueError(f"not a SteamID64 (17 digits, {STEAM_ID_MIN}..{STEAM_ID_MAX}): {value!r}")
    return value


def _offer_id(value: str) -> str:
    if not _OFFER_ID.match(value):
        raise ValueError(f"not a trade offer id (a decimal string of up to 20 digits): {value!r}")
    return value


SteamId = Annotated[StrictStr, AfterValidator(_steam_id)]
OfferId = Annotated[StrictStr, AfterValidator(_offer_id)]


def normalize_state(value: Any) -> str:
    """An ETradeOfferState name, number 1-11 (as int or digits) or Unknown(n) -> the name."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and value in OFFER_STATES:
        return OFFER_STATES[value]
    elif isinstance(value, str):
        if value in _STATE_NAMES or _UNKNOWN_STATE.match(value):
            return value
        if value.isascii() and value.isdigit() and int(value) in OFFER_STATES:
            return OFFER_STATES[int(value)]
    raise ValueError(
        f"not a trade offer state (an ETradeOfferState name, 1-11 or Unknown(n)): {value!r}"
    )


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Offer(_Open):
    trade_offer_id: OfferId
    friend_steam_id: SteamId | None = None


class _Negotiation(_Open):
    friend_steam_id: SteamId | None = None


class _Document(_Open):
    account_steam_id: SteamId | None = None
    trade_offers: list[dict[str, Any]] | None = None
    negotiations: dict[SteamId, dict[str, Any]] | None = None


class _FriendIds(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    friend_steam_ids: list[SteamId]


def check_steam_id(value: Any, what: str = "steam id") -> str:
    """Validate a SteamID64 given in a path or body; raise InvalidInput otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what}: must be a string", code="invalid_steam_id")
    try:
        return _steam_id(value)
    except ValueError as e:
        raise InvalidInput(f"{what}: {e}", code="invalid_steam_id") from e


def _fail(e: ValidationError, where: str) -> InvalidInput:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in (where, *first["loc"]) if p != "")
    details = [
        {"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in e.errors()
    ]
    return InvalidInput(f"{loc}: {first['msg']}", code="validation_error", details=details)


def _require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: must be a JSON object", code="validation_error")
    return cast(dict[str, Any], value)


def _plainly_valid(offer: dict[str, Any]) -> bool:
    """The common case checked by hand: the model (and its messages) only for the rest."""
    oid = offer.get("trade_offer_id")
    if type(oid) is not str or not _OFFER_ID.match(oid):
        return False
    friend = offer.get("friend_steam_id")
    return friend is None or (
        type(friend) is str
        and _STEAM_ID.match(friend) is not None
        and STEAM_ID_MIN <= int(friend) <= STEAM_ID_MAX
    )


def validate_offer(value: Any, where: str = "trade_offer_data") -> dict[str, Any]:
    """Check an offer; return it with `state` normalised to its name (a copy if changed)."""
    offer = _require_object(value, where)
    if not _plainly_valid(offer):
        try:
            _Offer.model_validate(offer)
        except ValidationError as e:
            raise _fail(e, where) from e
    if "state" in offer:
        try:
            state = normalize_state(offer["state"])
        except ValueError as e:
            raise InvalidInput(f"{where}.state: {e}", code="invalid_state") from e
        if state != offer["state"]:
            offer = {**offer, "state": state}
    return offer


def validate_negotiation(value: Any, friend: str, where: str = "negotiation") -> dict[str, Any]:
    """Check one friend's negotiation record against the friend id it is stored under."""
    record = _require_object(value, where)
    try:
        _Negotiation.model_validate(record)
    except ValidationError as e:
        raise _fail(e, where) from e
    named = record.get("friend_steam_id")
    if named is not None and named != friend:
        raise InvalidInput(
            f"{where}.friend_steam_id: {named!r} does not match the friend id {friend!r}",
            code="friend_mismatch",
        )
    return record


def validate_document(value: Any, account: str) -> dict[str, Any]:
    """Check a whole account document; return it with offer states normalised."""
    doc = _require_object(value, "document")
    try:
        _Document.model_validate(doc)
    except ValidationError as e:
        raise _fail(e, "document") from e
    named = doc.get("account_steam_id")
    if named is not None and named != account:
        raise InvalidInput(
            f"document.account_steam_id: {named!r} does not match the account {account!r}",
            code="account_mismatch",
        )
    offers = doc.get("trade_offers")
    if offers:
        checked = [validate_offer(o, f"document.trade_offers.{i}") for i, o in enumerate(offers)]
        seen: set[str] = set()
        for o in checked:
            if o["trade_offer_id"] in seen:
                raise InvalidInput(
                    f"document.trade_offers: trade_offer_id {o['trade_offer_id']} appears twice",
                    code="duplicate_offer",
                )
            seen.add(o["trade_offer_id"])
        if any(a is not b for a, b in zip(checked, offers, strict=True)):
            doc = {**doc, "trade_offers": checked}
    for friend, record in (doc.get("negotiations") or {}).items():
        validate_negotiation(record, friend, f"document.negotiations.{friend}")
    return doc


def validate_friend_ids(body: Any) -> list[str]:
    """Check `{"friend_steam_ids": [...]}`; return the ids without repeats, in order."""
    _require_object(body, "body")
    try:
        # Only the one field: the rest of a body is not the event's. Absent, it is "required".
        given = {k: v for k, v in body.items() if k == "friend_steam_ids"}
        ids = _FriendIds.model_validate(given).friend_steam_ids
    except ValidationError as e:
        raise _fail(e, "body") from e
    return list(dict.fromkeys(ids))
