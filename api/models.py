"""Pydantic models of the HTTP edge: they document requests and answers (OpenAPI).

Request bodies are validated by the event rules in `eventlog.events` (documents
are open, so the models here only describe them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from eventlog.events import OFFER_STATES

from .patterns import STEAM_ID_PATTERN

__all__ = ["MODELS"]


SteamId = Annotated[str, Field(pattern=STEAM_ID_PATTERN, examples=["76561199027634480"])]
_STATE_TEXT = "|".join([*OFFER_STATES.values(), r"Unknown\([0-9]{1,10}\)", "[1-9]", "1[01]"])
OfferState = (
    Annotated[str, Field(pattern=f"^(?:{_STATE_TEXT})$")] | Annotated[int, Field(ge=1, le=11)]
)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # a default of null where null is not a valid value


class TradeOffer(_Open):
    trade_offer_id: str = Field(pattern=r"^[0-9]{1,20}$", examples=["8189748113"])
    # Optional, but never null (absent means Active for a new offer): no null in the schema.
    state: OfferState | SkipJsonSchema[None] = Field(
        None,
        description="ETradeOfferState name, its number 1-11, or Unknown(<n>)",
        json_schema_extra=_no_default,
    )
    friend_steam_id: SteamId | None = None


class AccountDocument(_Open):
    account_steam_id: SteamId | None = None
    # A client's null collection is kept as null (DESIGN: documents are open).
    trade_offers: list[TradeOffer] | None = []
    negotiations: dict[SteamId, dict[str, Any]] | None = {}


class FriendNegotiation(_Open):
    friend_steam_id: SteamId | None = None
    state: Any = None


class UpsertTradeOfferRequest(BaseModel):
    trade_offer_data: TradeOffer
    expected_version: int | None = Field(None, ge=0)


class RemoveFriendsRequest(BaseModel):
    friend_steam_ids: list[SteamId]
    expected_version: int | None = Field(None, ge=0)


class Position(BaseModel):
    partition: int
    offset: int


class WriteAnswer(BaseModel):
    success: Literal[True]
    version: int
    position: Position | None
    event_id: str | None
    redis_written: bool
    projected: bool
    appended: bool


class DocumentAnswer(BaseModel):
    success: Literal[True]
    data: AccountDocument
    created_new: bool
    source: Literal["file", "redis"]
    version: int


class SaveAnswer(WriteAnswer):
    message: str
    steam_id: str
    negotiations_count: int
    trade_offers_count: int
    updated_at: str | None


class UpsertTradeOfferAnswer(WriteAnswer):
    operation: Literal["added", "updated"]
    trade_offer_id: str
    state: Any
    previous_state: Any
    updated_at: str | None
    redis_operation: Literal["written", "deferred", "disabled"]


class UpsertFriendAnswer(WriteAnswer):
    operation: Literal["created", "updated"]
    friend_steam_id: str
    state: Any
    previous_state: Any
    updated_at: str | None


class DeleteFriendAnswer(WriteAnswer):
    removed: bool
    friend_steam_id: str
    previous_state: Any
    message: str


class RemoveFriendsAnswer(WriteAnswer):
    removed_count: int
    removed_friends: list[str]
    not_found: list[str]


class EventsAnswer(BaseModel):
    success: Literal[True]
    steam_id: str
    events: list[dict[str, Any]]
    count: int
    next_from_version: int


class AccountHealthAnswer(BaseModel):
    success: Literal[True]
    steam_id: str
    file_exists: bool
    file_stats: dict[str, Any] | None
    redis_exists: bool
    redis_metadata: dict[str, Any] | None
    redis_error: str | None = None
    file_error: str | None = None  # the snapshot could not be read (it is damaged)
    versions: dict[str, int | None]
    in_sync: bool


class SummaryAnswer(BaseModel):
    success: Literal[True]
    accounts: int
    trade_offers: int
    trade_offers_by_state: dict[str, int]
    friends: int
    events: int
    source: Literal["file", "redis"]
    unreadable: int = 0  # accounts whose document could not be read (a damaged snapshot)


class HealthAnswer(BaseModel):
    success: Literal[True]
    status: Literal["ok"]
    service: Literal["tradelog"]
    uptime: float
    phase: int
    redis: Literal["ok", "failing", "disabled"]  # as this worker's last stream write found it


class ReadyAnswer(BaseModel):
    success: bool
    status: str
    phase: int
    log_writable: bool
    log_damaged: dict[str, str]  # partition -> the damaged line its last append found
    redis: dict[str, Any]
    redis_written_failures: int
    projectors: dict[str, Any]
    # Only on a 503, the error shape's fields.
    error: str | None = None
    code: str | None = None
    details: Any = None


class ErrorAnswer(BaseModel):
    success: Literal[False]
    error: str
    code: str
    details: Any = None


MODELS: list[type[BaseModel]] = [
    AccountDocument,
    FriendNegotiation,
    UpsertTradeOfferRequest,
    RemoveFriendsRequest,
    DocumentAnswer,
    SaveAnswer,
    UpsertTradeOfferAnswer,
    UpsertFriendAnswer,
    DeleteFriendAnswer,
    RemoveFriendsAnswer,
    EventsAnswer,
    AccountHealthAnswer,
    SummaryAnswer,
    HealthAnswer,
    ReadyAnswer,
    ErrorAnswer,
]
