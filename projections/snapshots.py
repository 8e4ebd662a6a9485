"""Snapshot files: `negotiations/<steamId>.json`, the legacy format, and reading them back.

A snapshot is the account's document as orjson indents it (2 spaces, as the
legacy service wrote it) with the applied `version` as the document's own
`version` field: exactly the document GET answers. The fold's offer scores that
the document cannot give back (offers without a readable `updated_at` are
scored by their event's time) are kept in the inode's tag (tags.py), written and
put in place with the file. A snapshot without a current tag is in the layout
before tags, with those scores in a reserved last key (reserved_key.py).

Readers never parse more than they must: the version line is found by
searching from the end. Encoding them is snapshot_encode.py, writing them
(atomically, durably) snapshot_writes.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from eventlog._exceptions import CorruptSnapshot
from eventlog.records import LEGACY_IMPORTED
from eventlog.settings import Settings

from .fold import Fold
from .reserved_key import RESERVED, restore, split
from .tags import read_scores, tag_version
from .times import offer_score
from .whole_reads import read_tagged

__all__ = [
    "LEGACY_IN_PLACE",
    "RESERVED",
    "current_tag",
    "decode",
    "foreign",
    "legacy_file",
    "legacy_unimported",
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
    yet (None, and its size): the account's import replaces it; any other event parks the
    account first (FileProjector), and GET and verify name it meanwhile."""
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
        _check_legacy(str(snapshot_path(settings, account)), raw, tag)
        return None, 0  # a legacy file nobody imported: not a projection
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


def legacy_file(settings: Settings, account: str) -> bool:
    """Whether the account's snapshot path holds a legacy document: a JSON object with
    no version, which the projector did not write (looked at, not parsed). One nobody
    imported, unless the log has events of the account. SnapshotUnavailable if it
    cannot be read."""
    read = read_tagged(snapshot_path(settings, account))
    if read is None:
        return False
    raw, tag = read
    return version_of(raw) is None and _not_legacy(raw, tag) is None


# Why a replay or repair refuses to rebuild such an account's snapshot.
LEGACY_IN_PLACE = (
    "a legacy file the log never imported is in its place: run `tradelog import-legacy` on "
    "its folder first"
)


def legacy_unimported(settings: Settings, account: str) -> bool:
    """Whether the account's snapshot path holds a legacy file the log has no import of:
    rebuilt from the log, the account would replace the one copy of that document."""
    if not legacy_file(settings, account):
        return False
    from eventlog.history import account_events

    events = account_events(settings, account, 1, 2**62)
    return not any(e.type == LEGACY_IMPORTED for e in events)


def _check_legacy(where: str, raw: bytes, tag: bytes | None) -> None:
    """CorruptSnapshot unless a snapshot without a version looks like a legacy document
    (a JSON object the projector did not write): a projection cut short, or a file that
    is no JSON object, is damage, and must never read as an account nobody wrote (a bot
    would save the empty document back over it). Looked at, not parsed: every GET of an
    account not imported yet asks, and a legacy file may be megabytes."""
    why = _not_legacy(raw, tag)
    if why is not None:
        raise CorruptSnapshot(where, why)


def _not_legacy(raw: bytes, tag: bytes | None) -> str | None:
    """Why a snapshot without a version is no legacy document; None if it looks like one."""
    if tag is not None:
        return "a projection without its version line (cut short?)"
    text = raw.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return "neither a projection nor a JSON object (cut short?)"
    return None


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
