"""Reads from the projection the phase selects: file snapshots (1) or Redis (2, 3)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from eventlog._exceptions import LegacyNotImported, RedisUnavailable
from eventlog.keys import Keys
from eventlog.redisconn import connect
from eventlog.settings import Settings

from .snapshot_cache import SnapshotCache

__all__ = ["Reads"]

SNAPSHOT_CACHE_BYTES = 32 << 20  # per worker: about a hundred 300 KB documents
PARKED_S = 1.0  # how long a GET may take the Redis projection's parked accounts as known


class Reads:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.source = "file" if settings.phase == 1 else "redis"
        self.redis = connect(settings)
        self._redis_down_until = 0.0
        self._snapshots = SnapshotCache(SNAPSHOT_CACHE_BYTES)
        self._parked: set[str] = set()  # the Redis projection's parked accounts, at
        self._parked_due = 0.0  # ... this time.monotonic() at the latest

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()

    @property
    def projector(self) -> str:
        return self.source

    async def document_json(self, account: str) -> tuple[bytes | None, int]:
        """The account's document as JSON bytes and its version, parsing nothing:
        the GET path embeds them as they are (a ~300 KB document stays sub-ms)."""
        if self.source == "file":
            from projections.snapshots import read_document_bytes, snapshot_path

            path = os.fspath(snapshot_path(self.settings, account))
            return self._snapshots.get(path, lambda: read_document_bytes(self.settings, account))
        # Called inline: a read is two pipelined round trips (~2 ms), and a thread hop
        # costs more than it frees the loop for. A Redis that just failed is not asked
        # again for a second, so a dead one blocks the loop for one time-out a second
        # at most (the answer meanwhile is 503 at once).
        if time.monotonic() < self._redis_down_until:
            raise RedisUnavailable("Redis did not answer a moment ago; retrying shortly")
        try:
            return self._redis_json(account)
        except RedisUnavailable:
            self._redis_down_until = time.monotonic() + 1.0
            raise

    def _redis_json(self, account: str) -> tuple[bytes | None, int]:
        from projections.redis_reader import read_document_json

        if self.redis is None:
            raise RedisUnavailable("Redis is disabled (TRADELOG_REDIS_URL is empty)")
        return read_document_json(self.redis, self.keys, account)

    def check_imported(self, account: str, seen: int | None) -> None:
        """LegacyNotImported if, in phase 1, the account's snapshot is a legacy file and
        this process knows no event of it (`seen`, the writer's): answered as a new
        account, a bot would save the empty document over it, and a write's projection
        would replace it. The file lies there when the legacy data dir is tradelog's.
        Not known may also be a partition this worker has not read yet: then the file
        stays legacy only until the projector writes the account's import."""
        if self.source != "file" or seen:
            return
        from projections.snapshots import legacy_file, snapshot_path

        # (a parked account's writes wait in its park, and the file stays; asked only of
        # a legacy file: a GET has asked already, and a new account has neither)
        if legacy_file(self.settings, account) and self.parked(account, fresh=False) is None:
            raise LegacyNotImported(account, os.fspath(snapshot_path(self.settings, account)))

    def file_document(self, account: str) -> tuple[dict[str, Any] | None, int]:
        from projections.snapshots import read_document

        return read_document(self.settings, account)

    def redis_document(self, account: str) -> tuple[dict[str, Any] | None, int]:
        from projections.redis_reader import read_document

        if self.redis is None:
            raise RedisUnavailable("Redis is disabled (TRADELOG_REDIS_URL is empty)")
        return read_document(self.redis, self.keys, account)

    def is_parked(self, account: str) -> bool:
        """Whether the read projection has parked the account, as it says now (one
        lookup: a failed `access` for files, an HEXISTS for Redis)."""
        if self.source == "file":
            from projections.file_parking import read_park_summary

            return read_park_summary(self.settings, account) is not None
        if self.redis is None:
            return False
        try:
            return bool(self.redis.hexists(self.keys.parked(), account))
        except redis.RedisError as e:
            raise RedisUnavailable(
                f"cannot read the Redis projection's parked accounts: {e}"
            ) from e

    def parked(self, account: str, *, fresh: bool = True) -> tuple[str, int] | None:
        """Why the read projection parked the account and the last version the log holds
        for it as far as the parking knows; None if it is not parked. Every GET asks, so
        `fresh=False` may answer from the parked accounts Redis named within PARKED_S
        (a file projection is asked exactly: one failed open when it is not parked)."""
        if self.source == "file":
            from projections.file_parking import read_park_summary

            summary = read_park_summary(self.settings, account)
            if summary is None:
                return None
            # Its waiting events are the failing one and every later one, in order.
            return str(summary["error"]), int(summary["version"]) + max(summary["waiting"], 1) - 1
        if self.redis is None:
            return None
        from projections.redis_parking import parked_accounts, parked_error

        now = time.monotonic()
        if fresh or now >= self._parked_due:
            self._parked = parked_accounts(self.redis, self.keys)
            self._parked_due = now + PARKED_S
        if account not in self._parked:
            return None
        return parked_error(self.redis, self.keys, account)

    def durable_positions(self) -> dict[int, int]:
        """The read projector's applied positions (next offset per partition)."""
        if self.source == "file":
            from projections.checkpoint import read_checkpoint

            return dict(read_checkpoint(self.settings).positions)
        if self.redis is None:
            return {}
        try:
            raw = self.redis.hgetall(self.keys.progress("redis"))
        except redis.RedisError as e:
            raise RedisUnavailable(str(e)) from e
        return {int(k): int(v) for k, v in raw.items() if k.isdigit()}

    def redis_state(self) -> dict[str, Any]:
        if self.redis is None:
            return {"enabled": False, "reachable": False}
        try:
            self.redis.ping()
        except redis.RedisError as e:
            return {"enabled": True, "reachable": False, "error": str(e)}
        return {"enabled": True, "reachable": True}

    def file_stats(self, account: str) -> dict[str, Any] | None:
        from projections.snapshots import snapshot_path

        path = snapshot_path(self.settings, account)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return {"path": str(path), "size": st.st_size, "modified": st.st_mtime}
