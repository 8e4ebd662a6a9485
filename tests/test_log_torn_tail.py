"""A torn last line (a crash mid-write, never acknowledged) is cut off when a writer
starts, before any append: DESIGN's "cut off at start-up"."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from eventlog import Writer
from eventlog.segments import partition_dir, segment_bases, segment_path
from eventlog.settings import Settings
from eventlog.torn_tail import cut_torn_tails
from tests.procs.api_harness import KEY, TRADELOG, account_id, free_port

OFFER = {"trade_offer_id": "1", "state": "Active"}
TORN = b'{"id":"01a2","account":"7656'


def _last_segment(settings: Settings, partition: int) -> Path:
    pdir = partition_dir(settings.log_dir, partition)
    return segment_path(pdir, segment_bases(pdir)[-1])


def _tear(settings: Settings) -> tuple[Path, bytes]:
    """Two events appended, then half a line after them, as a crash leaves it."""
    with Writer(settings) as writer:
        writer.append(account_id(0), "TradeOfferUpserted", {"offer": OFFER})
        done = writer.append(account_id(0), "TradeOfferUpserted", {"offer": OFFER})
    path = _last_segment(settings, done.partition)
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(TORN)
    return path, whole


def test_cut_torn_tails_leaves_the_complete_lines(settings: Settings) -> None:
    path, whole = _tear(settings)
    assert cut_torn_tails(settings) == {path: len(TORN)}
    assert path.read_bytes() == whole
    assert cut_torn_tails(settings) == {}  # nothing left to cut


def test_a_partition_another_writer_holds_is_skipped_not_waited_for(settings: Settings) -> None:
    path, whole = _tear(settings)
    # Another open file description: its flock conflicts even within this process.
    held = os.open(path.parent / ".lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cut_torn_tails(settings) == {}  # returns at once; that writer cuts it
        assert path.read_bytes() == whole + TORN
    finally:
        os.close(held)
    assert cut_torn_tails(settings) == {path: len(TORN)}


def test_cut_torn_tails_of_a_segment_with_no_complete_line(settings: Settings) -> None:
    path, _ = _tear(settings)
    path.write_bytes(TORN)
    assert cut_torn_tails(settings) == {path: len(TORN)}
    assert path.read_bytes() == b""


def test_serve_cuts_a_torn_tail_at_start(settings: Settings) -> None:
    path, whole = _tear(settings)
    port = free_port()
    env = {
        **os.environ,
        "TRADELOG_DATA_DIR": str(settings.data_dir),
        "TRADELOG_REDIS_URL": "",
        "TRADELOG_PARTITIONS": str(settings.partitions),
        "TRADELOG_API_KEYS": KEY,
    }
    env.pop("TRADELOG_CONFIG", None)
    proc = subprocess.Popen(
        [str(TRADELOG), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        assert path.read_bytes() == whole  # cut before the first request, none made
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert b"torn" in err, err
