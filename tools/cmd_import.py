"""`tradelog import-legacy DIR`: legacy `<steamId>.json` files become LegacyImported events.

Every file is checked on its own: bad JSON, wrong types, or a name that does
not match its `account_steam_id` are reported by file name and skipped while
the rest goes on. Each event carries the file's sha256; the writer appends
nothing when the account's last import had the same sha256, so importing the
same files again adds nothing and a changed file imports again.
"""

from __future__ import annotations

import argparse
import hashlib
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from eventlog._exceptions import InvalidInput, TradelogError
from eventlog.commands import AppendResult, Command, make_command
from eventlog.records import LEGACY_IMPORTED
from eventlog.settings import Settings
from eventlog.writer import Writer

from .cli import Subparsers, settings_from
from .console import Bar, progress_bar

__all__ = ["ImportReport", "import_dir", "register"]

_WINDOW = 256  # commands in flight: enough for group commit to batch fsyncs


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "import-legacy",
        parents=[parent],
        help="import legacy data/negotiations/*.json files as events",
        description="Imports each legacy account file as one LegacyImported event. "
        "Exits 1 when any file failed.",
    )
    p.add_argument(
        "dir",
        type=Path,
        help="folder of legacy <steamId>.json files (or the legacy data dir holding negotiations/)",
    )
    p.add_argument("--dry-run", action="store_true", help="check every file, append nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


@dataclass
class ImportReport:
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    snapshots: int = 0  # tradelog's own snapshots, found in its snapshot folder: left alone
    offers: int = 0
    friends: int = 0
    duration_s: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        done = self.total or 1
        return {
            "files_total": self.total,
            "files_ok": self.ok,
            "files_failed": self.failed,
            "files_skipped": self.skipped,
            "own_snapshots": self.snapshots,
            "trade_offers": self.offers,
            "friends": self.friends,
            "duration_s": round(self.duration_s, 3),
            "avg_ms_per_account": round(self.duration_s * 1000 / done, 3),
            "errors": self.errors,
        }


def _command(
    settings: Settings, path: Path, request_id: str, own: bool
) -> tuple[Command, int, int] | None:
    """The file's command and its offer and friend counts; None for one of tradelog's own
    snapshots (`own`: the folder is its snapshot folder), which is left alone."""
    raw = path.read_bytes()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(doc, dict):
        raise InvalidInput("not a JSON object", code="validation_error")
    version = doc.get("version")
    if own and type(version) is int and version > 0:
        # The legacy service wrote no version: this is a projection of the log. Imported,
        # it would replace the account with what the projector last wrote (a lagging one
        # undoes the writes after it).
        return None
    account = path.stem
    named = doc.get("account_steam_id")
    if named is not None and named != account:
        raise InvalidInput(
            f"file name {path.name} does not match account_steam_id {named!r}",
            code="account_mismatch",
        )
    data = {
        "document": doc,
        "source": {"file": path.name, "sha256": hashlib.sha256(raw).hexdigest()},
    }
    cmd = make_command(
        account, LEGACY_IMPORTED, data, settings.partitions,
        source="import", request_id=request_id,
    )  # fmt: skip
    offers = len(doc.get("trade_offers") or ())
    friends = len(doc.get("negotiations") or {})
    return cmd, offers, friends


def legacy_folder(folder: Path) -> Path:
    """Where the account files are: `folder`, or its `negotiations/` when `folder` is a
    legacy data dir (the old service kept them in `data/negotiations/`)."""
    inner = folder / "negotiations"
    if inner.is_dir() and not any(p.is_file() for p in folder.glob("*.json")):
        return inner
    return folder


def import_dir(
    writer: Writer | None,
    folder: Path,
    settings: Settings | None = None,
    progress: Bar | None = None,
) -> ImportReport:
    """Import every `<steamId>.json` of `folder`; its events share one request id (the run).
    With no writer (a dry run, under `settings`), each file is checked and nothing is
    appended or created."""
    if writer is not None:
        settings = writer.settings
    if settings is None:
        raise TypeError("import_dir needs a writer or, for a dry run, settings")
    files = sorted(p for p in folder.glob("*.json") if p.is_file())
    request_id = f"import-{uuid.uuid4().hex}"
    # tradelog's snapshot folder is where the legacy files lie when the data dirs are one.
    own = folder.resolve() == settings.snapshot_dir.resolve()
    report = ImportReport(total=len(files))
    started = time.perf_counter()
    task = progress.add_task("importing", total=len(files)) if progress else None
    inflight: list[tuple[Path, Future[AppendResult], int, int]] = []

    def settle(entry: tuple[Path, Future[AppendResult], int, int]) -> None:
        path, fut, offers, friends = entry
        try:
            result = fut.result()
        except TradelogError as e:
            report.failed += 1
            report.errors[path.name] = str(e)
        else:
            if result.appended:
                report.ok += 1
                report.offers += offers
                report.friends += friends
            else:
                report.skipped += 1
        if progress is not None and task is not None:
            progress.advance(task)

    for path in files:
        try:
            made = _command(settings, path, request_id, own)
        except (TradelogError, OSError) as e:
            report.failed += 1
            report.errors[path.name] = str(e)
            made = None
        else:
            if made is None:  # one of tradelog's own snapshots
                report.snapshots += 1
        if made is None:
            if progress is not None and task is not None:
                progress.advance(task)
            continue
        cmd, offers, friends = made
        if writer is None:  # a dry run
            report.ok += 1
            report.offers += offers
            report.friends += friends
            if progress is not None and task is not None:
                progress.advance(task)
            continue
        inflight.append((path, writer.submit(cmd), offers, friends))
        if len(inflight) >= _WINDOW:
            settle(inflight.pop(0))
    for entry in inflight:
        settle(entry)
    report.duration_s = time.perf_counter() - started
    return report


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not args.dir.is_dir():
        raise InvalidInput(f"not a folder: {args.dir}")
    folder = legacy_folder(args.dir)
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with progress_bar(*columns) as bar:
        if args.dry_run:  # no writer: a dry run makes no log, marker or stream
            report = import_dir(None, folder, settings, bar)
        else:
            with Writer(settings) as writer:
                report = import_dir(writer, folder, progress=bar)
    if not report.total:  # not an error (an empty legacy dir), but never a silent one
        searched = folder if folder != args.dir else f"{folder} (nor in its negotiations/)"
        console.print(f"tradelog import-legacy: warning: no .json files in {searched}")
    summary = report.as_dict()
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        verb = "checked (dry run)" if args.dry_run else "imported"
        print(f"Legacy import from {folder}: {verb}")
        print(f"  files:   {report.total} total, {report.ok} ok, {report.failed} failed, "
              f"{report.skipped} skipped (unchanged since their last import)")  # fmt: skip
        if report.snapshots:
            print(f"  left alone: {report.snapshots} tradelog snapshots (its own snapshot "
                  "folder: projections of the log, not legacy files)")  # fmt: skip
        print(f"  content: {report.offers} trade offers, {report.friends} friends")
        print(f"  time:    {report.duration_s:.3f} s, "
              f"{summary['avg_ms_per_account']} ms per account")  # fmt: skip
        for name, error in report.errors.items():
            print(f"  FAILED {name}: {error}")
    return 1 if report.failed else 0
