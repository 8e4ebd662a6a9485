"""`tradelog verify --repair`: level what a verify report found, from the file log.

Nothing is repaired by hand: the file log is the truth, so a stream is cut back and
refilled by the relay, and an account is rebuilt by `replay_accounts`. A failure to
level the streams or to rebuild one projection's accounts is recorded, not raised, so
the rest is still attempted; the CLI verifies again afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import redis

from eventlog._exceptions import RedisUnavailable, TradelogError
from eventlog.keys import Keys
from eventlog.relay import Relay
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog

from .replay_accounts import replay_accounts
from .replay_redis import redis_client
from .verify_report import VerifyReport

__all__ = ["RepairReport", "repair"]


@dataclass(slots=True)
class RepairReport:
    streams: dict[int, str] = field(default_factory=dict)  # partition -> what was done
    relayed: int = 0  # entries the relay copied from the file log
    accounts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "streams": {str(p): what for p, what in sorted(self.streams.items())},
            "relayed": self.relayed,
            "accounts": self.accounts,
            "errors": self.errors,
        }


def _cut_stream(stream: StreamLog, partition: int, offset: int) -> int:
    """Delete a stream's entries from `offset` on, and let it take entries after its new
    top again."""
    client, key = stream.client, stream.keys.log(partition)
    deleted = 0
    while rows := cast(Any, client.xrange(key, f"0-{offset + 1}", "+", 1000)):
        deleted += int(client.xdel(key, *[row[0] for row in rows]))
    stream.rewind(partition)
    return deleted


def repair(settings: Settings, report: VerifyReport) -> RepairReport:
    """Level the streams that differ and rebuild the accounts found different.

    A stream that diverges is cut back to the divergence, then the relay copies the
    file's entries again (the stream is derived from the file, the truth). Accounts are
    rebuilt with `replay_accounts`; the file projection refuses while its daemon runs.
    """
    out = RepairReport()
    bad = [s for s in report.streams if not s.ok]
    if bad:
        client = redis_client(settings)
        keys = Keys(settings.key_prefix)
        try:
            stream = StreamLog(client, keys)
            for check in bad:
                cut = check.divergence["offset"] if check.divergence else check.stream_end
                deleted = _cut_stream(stream, check.partition, cut)
                out.streams[check.partition] = f"cut {deleted} entries from offset {cut}"
            out.relayed = Relay(settings, stream).run_once().total
        except redis.RedisError as e:
            out.errors.append(f"streams: {RedisUnavailable(str(e))}")
        except TradelogError as e:
            out.errors.append(f"streams: {e}")
        finally:
            client.close()
    for projection in ("file", "redis"):
        failing = [f for f in report.findings if f.projection == projection and report.failing(f)]
        # A legacy file not imported is the one copy of its account: rebuilt from a log
        # without it, it would be deleted. It is imported, not repaired.
        out.errors += [f"{projection}: {f.account}: {f.detail}" for f in failing
                       if f.kind == "unimported"]  # fmt: skip
        accounts = sorted({f.account for f in failing if f.kind != "unimported"})
        if not accounts:
            continue
        try:
            results = replay_accounts(settings, accounts, (projection,))
        except TradelogError as e:
            out.errors.append(f"{projection}: {e}")
            continue
        out.accounts[projection] = [r.as_dict() for r in results]
        out.errors += [f"{projection}: {r.account}: {r.error}" for r in results if r.error]
    return out
