"""`tradelog relay`: copy to the streams what the file log holds beyond them."""

from __future__ import annotations

import argparse
import threading

from eventlog._exceptions import SettingsError
from eventlog.keys import Keys
from eventlog.redisconn import connect
from eventlog.relay import Relay
from eventlog.streamlog import StreamLog
from projections.daemon import install_stop_signals

from .cli import settings_from

__all__ = ["register"]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "relay",
        parents=[parent],
        help="copy missing entries from the file log to the Redis streams",
        description="Levels each partition's Redis stream with the file log, in order.",
    )
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        help="copy what is missing, then exit (0 when every stream is level)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    client = connect(settings)
    if client is None:
        raise SettingsError("TRADELOG_REDIS_URL: the relay needs Redis; it is disabled (empty)")
    relay = Relay(settings, StreamLog(client, Keys(settings.key_prefix)))
    stop = threading.Event()
    install_stop_signals(stop)
    copied = relay.run(stop, until_caught_up=args.until_caught_up)
    print(f"relay: copied {copied} entries")
    return 0
