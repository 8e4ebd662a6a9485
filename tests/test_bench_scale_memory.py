"""The big log the scale and memory benches are built on holds the same events in the file
and in the streams."""

from __future__ import annotations

from collections.abc import Callable

import redis

from eventlog.keys import Keys
from eventlog.segments import Cursor, log_ends, partition_dir
from eventlog.settings import Settings
from eventlog.streamlog import StreamLog
from tools.bench.biglog import drop_keys, make_log

MakeSettings = Callable[..., Settings]


def test_the_big_log_holds_the_same_events_in_file_and_streams(
    make_settings: MakeSettings, redis_url: str
) -> None:
    s = make_settings(redis_url=redis_url)
    make_log(s, 3000, accounts=40)
    ends = log_ends(s)
    assert sum(ends.values()) == 3000
    client = redis.Redis.from_url(redis_url)
    stream = StreamLog(client, Keys(s.key_prefix))
    for p, end in ends.items():
        cursor = Cursor(partition_dir(s.log_dir, p), p)
        in_file, _ = cursor.read()
        cursor.close()
        assert [e.id for e in stream.read(p, 0, count=end + 1)] == [e.id for e in in_file]
    drop_keys(s)
    assert client.dbsize() == 0
    client.close()
