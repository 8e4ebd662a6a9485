"""A faithful copy of the scheme tradelog replaces: one JSON file per account.

The legacy service kept one indented JSON file per account,
`data/negotiations/<steamId>.json`, and did every change as read-modify-write
under a `filelock.FileLock`: lock, read, parse, merge, `json.dumps(indent=2)`,
write a temp file, fsync, rename. Nothing here is optimised on purpose: the
bench's "vs_legacy" ratios are only honest if this is what the bots ran. The
documents to seed it with are in legacy_docs.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

__all__ = ["LegacyStore", "iso"]


def iso(moment: datetime) -> str:
    """`Date.toISOString()`'s format: milliseconds and a Z, as the legacy documents hold."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """`new Date().toISOString()`: what the legacy service stamped."""
    return iso(datetime.now(UTC))


def _default_document(account: str) -> dict[str, Any]:
    now = now_iso()
    return {
        "account_steam_id": account,
        "account_username": None,
        "created_at": now,
        "updated_at": now,
        "our_inventory": None,
        "our_inventory_updated_at": None,
        "trade_offers": [],
        "trade_offers_updated_at": None,
        "negotiations": {},
    }


class LegacyStore:
    """The legacy per-account JSON files, with the legacy upsert and read."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "negotiations"
        self.dir.mkdir(parents=True, exist_ok=True)
        # One lock object per account, kept like a long-running service would.
        self._locks: dict[str, FileLock] = {}

    def path(self, account: str) -> Path:
        return self.dir / f"{account}.json"

    def save(self, account: str, doc: dict[str, Any]) -> None:
        """Write a whole document the legacy way (seeding a bench, or POST /negotiations)."""
        with self._lock(account):
            self._write(account, doc)

    def seed(self, accounts: list[str], template: dict[str, Any]) -> int:
        """Give each account a copy of `template` (its id swapped in); return the file size.

        Dumped once and copied: a scenario's set-up should not take as long as its run.
        """
        owner = template["account_steam_id"]
        text = json.dumps(template, indent=2)
        for account in accounts:
            self.path(account).write_text(text.replace(owner, account), encoding="utf-8")
        return len(text.encode())

    def read(self, account: str) -> dict[str, Any]:
        """The legacy GET: read the file and parse it (no lock, as the service did)."""
        try:
            text = self.path(account).read_text(encoding="utf-8")
        except FileNotFoundError:
            return _default_document(account)
        doc: dict[str, Any] = json.loads(text)
        return doc

    def upsert_offer(self, account: str, offer: dict[str, Any]) -> str:
        """The legacy atomic-upsert-trade-offer; returns "added" or "updated"."""
        with self._lock(account):
            doc = self.read(account)
            now = now_iso()
            offers: list[dict[str, Any]] = doc.setdefault("trade_offers", [])
            oid = offer["trade_offer_id"]
            at = next((i for i, o in enumerate(offers) if o.get("trade_offer_id") == oid), None)
            if at is not None:
                old = offers[at]
                merged = {**old, **offer}
                if "state" in offer and offer["state"] != old.get("state"):
                    history = list(old.get("state_history") or [])
                    merged["state_history"] = [
                        *history,
                        {"state": offer["state"], "timestamp": now},
                    ]
                offers[at] = merged
                operation = "updated"
            else:
                new = dict(offer)
                new.setdefault("created_at", now)
                new.setdefault("state", "Active")
                new.setdefault("state_history", [{"state": new["state"], "timestamp": now}])
                offers.append(new)
                operation = "added"
            doc["updated_at"] = now
            doc["trade_offers_updated_at"] = now
            self._write(account, doc)
            return operation

    def _lock(self, account: str) -> FileLock:
        lock = self._locks.get(account)
        if lock is None:
            lock = self._locks[account] = FileLock(str(self.path(account)) + ".lock")
        return lock

    def _write(self, account: str, doc: dict[str, Any]) -> None:
        path = self.path(account)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
