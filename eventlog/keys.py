"""Every Redis key name tradelog uses, built in this one place.

`{...}` is a literal Redis Cluster hash tag: all of one account's keys share a
slot so one script can change them atomically; each partition's stream has its
own tag.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "negotiation"

    # The log.
    def log(self, partition: int) -> str:
        return f"{self.prefix}:log:{{p{partition:02d}}}"

    # The Redis projection (the read model).
    def meta(self, account: str) -> str:
        return f"{self.prefix}:meta:{{{account}}}"

    def offers(self, account: str) -> str:
        return f"{self.prefix}:offers:{{{account}}}"

    def offers_index(self, account: str) -> str:
        return f"{self.prefix}:offers:index:{{{account}}}"

    def friend(self, account: str, friend: str) -> str:
        return f"{self.prefix}:friend:{{{account}}}:{friend}"

    def friends_index(self, account: str) -> str:
        return f"{self.prefix}:friends:index:{{{account}}}"

    def accounts(self) -> str:
        return f"{self.prefix}:accounts"

    # Projector bookkeeping.
    def group(self) -> str:
        """The consumer group the Redis projector reads each stream with."""
        return f"{self.prefix}-projector"

    def progress(self, projector: str) -> str:
        """Hash: partition -> highest offset applied, plus `heartbeat` (ms)."""
        return f"{self.prefix}:progress:{projector}"

    def parked(self) -> str:
        """Hash: account -> JSON dead-letter record of a parked account."""
        return f"{self.prefix}:parked"

    def parked_events(self, account: str) -> str:
        """List: a parked account's waiting events (stream field JSON), oldest first."""
        return f"{self.prefix}:parked:events:{{{account}}}"

    def lease(self, partition: int) -> str:
        """String with a TTL: the Redis projector consumer that reads the partition now."""
        return f"{self.prefix}:lease:{{p{partition:02d}}}"

    def notify_channel(self) -> str:
        """Pub/sub channel a projector publishes its progress on."""
        return f"{self.prefix}:progress-events"
