"""`tradelog`: one console script, a subcommand per tool.

Each subcommand lives in its own module exposing `register(subparsers)`; the
settings are built once here, from flags over environment over TOML, and
passed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from eventlog._exceptions import TradelogError
from eventlog.settings import Settings, load_settings
from projections.checkpoint import check_partitions
from projections.gcpause import tune_for_service

__all__ = ["Subparsers", "main", "settings_from", "stdout_closed"]

Subparsers = argparse._SubParsersAction  # the type `register` functions receive

# Subcommand modules, in the order `--help` lists them.
COMMANDS = [
    "tools.cmd_up",
    "tools.cmd_serve",
    "tools.cmd_project",
    "tools.cmd_relay",
    "tools.cmd_replay",
    "tools.cmd_verify",
    "tools.cmd_import",
    "tools.cmd_tail",
    "tools.cmd_stats",
    "tools.bench",
]

_SETTING_FLAGS = {
    "data_dir": ("--data-dir", "TRADELOG_DATA_DIR: log, snapshots, checkpoints"),
    "redis_url": ("--redis-url", "TRADELOG_REDIS_URL; empty disables Redis"),
    "phase": ("--phase", "TRADELOG_PHASE: 1, 2 or 3"),
    "partitions": ("--partitions", "TRADELOG_PARTITIONS"),
    "fsync": ("--fsync", "TRADELOG_FSYNC: always, batch or off"),
    "key_prefix": ("--key-prefix", "TRADELOG_KEY_PREFIX"),
}


def common_parser() -> argparse.ArgumentParser:
    """Flags every subcommand takes: the config file and the settings it may override."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (flags override environment and --config)")
    group.add_argument("--config", help="TOML settings file (or TRADELOG_CONFIG)")
    for name, (flag, help_text) in _SETTING_FLAGS.items():
        group.add_argument(flag, dest=f"setting_{name}", default=None, help=help_text)
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parent


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """The one Settings object of this process, from flags over env over TOML.

    Checked against the data dir too: a log made with another TRADELOG_PARTITIONS
    stops every command (a read-only one such as `stats`, `tail` or `relay` would
    otherwise see only some partitions, or look for an account in the wrong one).
    """
    overrides = {
        name[len("setting_") :]: value
        for name, value in vars(args).items()
        if name.startswith("setting_") and value is not None
    }
    overrides.update({k: v for k, v in extra.items() if v is not None})
    settings = load_settings(args.config, **overrides)
    check_partitions(settings)
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradelog",
        description="Event-sourced write log for trading-bot negotiation state.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_parser()
    for name in COMMANDS:
        importlib.import_module(name).register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tune_for_service()
    try:
        code = args.func(args)
    except TradelogError as e:
        print(f"tradelog {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tradelog tail | head`: the reader has all it wanted
        return stdout_closed()
    return int(code or 0)


def stdout_closed() -> int:
    """What a command whose reader closed stdout exits with, quietly (141, 128 + SIGPIPE,
    as a shell reports it). Python's own recipe: stdout goes to /dev/null, so that the
    interpreter's flush of it at exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
