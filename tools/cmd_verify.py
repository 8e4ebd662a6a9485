"""`tradelog verify`: prove the file log, the streams and both projections agree."""

from __future__ import annotations

import argparse

import orjson

from eventlog._exceptions import InvalidInput
from projections.verify import Finding, RepairReport, VerifyReport, repair, verify

from .cli import Subparsers, settings_from
from .cmd_replay import progress_meter

__all__ = ["register"]

_SHOWN = 50  # findings listed per projection and kind; --json lists them all


def register(sub: Subparsers[argparse.ArgumentParser], parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "verify",
        parents=[parent],
        help="check that log, streams and projections agree (exit 0) or not (exit 1)",
        description=(
            "Compares the file log with each partition's stream (same event ids at the same "
            "offsets) and each projection with the fold of the log, account by account. A "
            "projection that only lags its running projector is reported as behind, not "
            "different (with its projector stopped, what lags stays behind: it fails). "
            "Streams are skipped when Redis is disabled. Exit 0 when all agree, 1 when "
            "something differs, 2 on errors, and 2 when Redis is configured but does not "
            "answer (the files are still checked and reported, but the streams and the "
            "Redis projection are not: agreement is not proven)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--strict", action="store_true", help="count lagging accounts as different")
    p.add_argument(
        "--repair",
        action="store_true",
        help="level the streams (relay), rebuild the accounts that differ, then verify again",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: 2 per core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise InvalidInput(f"--workers: must be at least 1 (got {args.workers})")
    settings = settings_from(args)
    with progress_meter() as meter:
        report = verify(settings, strict=args.strict, workers=args.workers, meter=meter)
    final, fixed = report, None
    if args.repair and not report.ok:
        fixed = repair(settings, report)
        with progress_meter() as meter:
            final = verify(settings, strict=args.strict, workers=args.workers, meter=meter)
    if args.json:
        out = final.as_dict()
        if fixed is not None:
            out["repair"] = {"before": report.as_dict(), **fixed.as_dict()}
        print(orjson.dumps(out).decode())
    else:
        if fixed is not None:
            _print(report, "before repair")
            _print_repair(fixed)
        _print(final, "after repair" if fixed is not None else "")
    if not final.ok:
        return 1
    return 2 if final.unreachable else 0


def _print(report: VerifyReport, when: str) -> None:
    head = f"verify{f' ({when})' if when else ''}"
    print(
        f"{head}: {report.events:,} events, {report.accounts:,} accounts, "
        f"{len(report.ends)} partitions"
    )
    if "streams" in report.skipped:
        print(f"  streams: not checked: {report.skipped['streams']}")
    else:
        level = sum(1 for s in report.streams if s.ok)
        print(f"  streams: {level} of {len(report.streams)} partitions agree with the file log")
        for s in report.streams:
            if s.divergence is not None:
                d = s.divergence
                print(
                    f"    p{s.partition}: first divergence at offset {d['offset']}: {d['why']} "
                    f"(file {d['file_event']}, stream {d['stream_event']})"
                )
            if s.missing_tail:
                print(
                    f"    p{s.partition}: the stream ends at {s.stream_end}, the file at "
                    f"{s.file_end}: {s.missing_tail} entries missing at its end"
                )
    for name, agree in report.agree.items():
        mine = [f for f in report.findings if f.projection == name]
        bad = [f for f in mine if report.failing(f)]
        behind = [f for f in mine if not report.failing(f)]
        # Behind and failing: its projector stopped (else --strict, listed as different).
        lagging: list[Finding] = []
        if name in report.stopped:
            lagging = [f for f in bad if f.kind == "behind"]
            bad = [f for f in bad if f.kind != "behind"]
        print(f"  {name} projection: {agree:,} accounts agree, {len(bad)} different, "
              f"{len(behind) + len(lagging)} behind")  # fmt: skip
        _list(bad, "DIFFERENT")
        _list(behind, "behind")
        if lagging:
            print(f"    {report.stopped[name]}: the {len(lagging)} behind stay behind (start it,"
                  f" or run `tradelog project {name} --until-caught-up`)")  # fmt: skip
            _list(lagging, "BEHIND")
    for name in ("redis",):
        if name in report.skipped and name not in report.agree:
            print(f"  {name} projection: not checked: {report.skipped[name]}")
    verdict = "OK" if report.ok else "FAILED"
    if report.ok and report.unreachable:
        verdict = "INCOMPLETE (Redis did not answer: only the files were checked)"
    print(f"{head}: {verdict}")


def _list(findings: list[Finding], label: str) -> None:
    for f in findings[:_SHOWN]:
        keys = f"; keys differ: {', '.join(f.keys)}" if f.keys else ""
        detail = f"; {f.detail}" if f.detail else ""
        print(
            f"    {label} {f.account} ({f.kind}): holds version {f.projection_version}, "
            f"the log {f.log_version}{keys}{detail}"
        )
    if len(findings) > _SHOWN:
        print(f"    … and {len(findings) - _SHOWN} more (--json lists them all)")


def _print_repair(fixed: RepairReport) -> None:
    print("repair:")
    for p, what in sorted(fixed.streams.items()):
        print(f"  stream p{p}: {what}")
    if fixed.streams:
        print(f"  relay copied {fixed.relayed} entries from the file log")
    for name, results in fixed.accounts.items():
        print(f"  {name}: rebuilt {len(results)} accounts from the log")
    for error in fixed.errors:
        print(f"  ERROR {error}")
