"""``mlops lake gc|verify|backup`` and ``mlops lineage``: lake operations at a terminal.

They call the plain functions (no Prefect API is started, so they answer in seconds); the
flows in ``flows/lake.py`` do the same on a schedule and publish artifacts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

# The retention policy's fields (``tasks/lakeops/policy.py`` checks them) and --wait.
_GC_FLAGS: list[tuple[str, type, float, str, str]] = [
    ("--keep-history", int, 10, "N",
     "champions of the alias history to keep, the current one first (default 10)"),
    ("--keep-days", float, 30.0, "DAYS",
     "keep model versions registered within DAYS, promoted or not (default 30)"),
    ("--keep-datasets", int, 5, "N", "newest dataset versions to keep per dataset (default 5)"),
    ("--grace-hours", float, 24.0, "HOURS", "keep anything written within HOURS (default 24)"),
    ("--wait", float, 600.0, "SECONDS",
     "how long --apply waits for runs using the lake to finish (default 600)"),
]  # fmt: skip


def add_parsers(sub: Any) -> None:
    """The ``lake`` and ``lineage`` subcommands, on ``mlops``'s subparsers."""
    lake = sub.add_parser("lake", help="operate the lake: gc, verify, backup and restore")
    lsub = lake.add_subparsers(dest="action", required=True)

    gc = lsub.add_parser(
        "gc",
        help="delete what no kept model or dataset version needs (a dry run without --apply)",
    )
    gc.add_argument("--lake", required=True, help="lake root (path or s3:// URI)")
    gc.add_argument("--dataset", help="only this dataset's (and model's) objects")
    gc.add_argument("--apply", action="store_true", help="delete (default: only list)")
    for flag, kind, default, metavar, what in _GC_FLAGS:
        gc.add_argument(flag, type=kind, default=default, metavar=metavar, help=what)
    gc.add_argument("--list", action="store_true", help="print every path, not only totals")
    gc.add_argument("--json", action="store_true", help="print the report as JSON")

    verify = lsub.add_parser("verify", help="check every record against what it names")
    verify.add_argument("--lake", required=True, help="lake root (path or s3:// URI)")
    verify.add_argument(
        "--deep", action="store_true", help="also re-hash every partition and model file"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    backup = lsub.add_parser(
        "backup",
        help="copy what the target lacks, data before records before pointers, then verify "
        "it; restore is the same command the other way",
    )
    backup.add_argument("--lake", required=True, help="the lake to copy (path or s3:// URI)")
    backup.add_argument(
        "--to", required=True, help="an empty location or an earlier backup of this lake"
    )
    backup.add_argument("--deep", action="store_true", help="verify the copy by re-hashing")
    backup.add_argument("--json", action="store_true", help="print the report as JSON")

    lineage = sub.add_parser(
        "lineage",
        help="a model's landing files, hashes and decisions, and the runs that scored with it",
    )
    lineage.add_argument("model", help="NAME (the champion) or NAME@VERSION")
    lineage.add_argument("--lake", required=True, help="lake root (path or s3:// URI)")
    lineage.add_argument("--json", action="store_true", help="print all of it as JSON")


def _policy(args: argparse.Namespace) -> Any:
    """The retention policy of the command line; exit 2 naming the flag that is wrong."""
    from pydantic import ValidationError

    from tasks.lakeops.policy import RetentionPolicy

    try:
        return RetentionPolicy(
            keep_history=args.keep_history,
            keep_days=args.keep_days,
            keep_datasets=args.keep_datasets,
            grace_hours=args.grace_hours,
        )
    except ValidationError as err:
        for error in err.errors():
            flag = "--" + str(error["loc"][0]).replace("_", "-")
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"error: {flag}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def lake(args: argparse.Namespace) -> int:
    from tasks.lake import Lake

    if args.action == "gc":
        return _gc(args, Lake(args.lake))
    if args.action == "verify":
        return _verify(args, Lake(args.lake))
    return _backup(args, Lake(args.lake), Lake(args.to))


def _gc(args: argparse.Namespace, where: Any) -> int:
    from tasks.lakeops.sweep import collect_garbage

    policy = _policy(args)

    def waiting(runs: list[Any]) -> None:
        print(f"waiting for {len(runs)} run(s) using the lake:", file=sys.stderr)
        for run in runs:
            print(f"  {run.describe()}", file=sys.stderr)

    report = collect_garbage(
        where,
        policy,
        dataset=args.dataset,
        apply=args.apply,
        wait_seconds=args.wait,
        on_wait=waiting,
    )
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    verb = "deleted" if report.applied else "would delete (dry run; --apply deletes)"
    print(f"lake      {report.lake}" + (f" (dataset {report.dataset})" if report.dataset else ""))
    print(f"holds     {report.objects:,} object(s), {_size(report.bytes)}")
    for name, roots in report.roots.items():
        print(f"keeps     {name}: " + "; ".join(roots))
    print(f"{verb}: {report.garbage_objects:,} object(s), {_size(report.garbage_bytes)}")
    for kind, total in report.garbage.items():
        print(f"  {kind:<17} {total.objects:>7,}  {_size(total.bytes):>12}")
    if args.list:
        for path in report.paths:
            print(f"  {path}")
    if report.record_uri:
        print(f"record    {report.record_uri}")
    return 0


def _verify(args: argparse.Namespace, where: Any) -> int:
    from tasks.lakeops.verify import verify

    report = verify(where, deep=args.deep)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        checked = ", ".join(f"{n:,} {k}" for k, n in report.checked.items())
        print(f"checked   {checked}" + (" (deep)" if report.deep else " (quick)"))
        for problem in report.problems:
            print(f"problem   {problem.uri}: {problem.problem}")
        print("ok" if report.ok else f"{len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def _backup(args: argparse.Namespace, source: Any, target: Any) -> int:
    from tasks.lakeops.backup import backup

    names = {1: "identity", 2: "data", 3: "records", 4: "manifests", 5: "pointers"}

    def phase(number: int, files: int) -> None:
        if files:
            print(f"copying   {files:,} {names[number]} file(s)", file=sys.stderr)

    report = backup(source, target, on_phase=phase, verify_deep=args.deep)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(
            f"copied    {report.copied:,} of {report.objects:,} object(s), "
            f"{_size(report.copied_bytes)}, to {report.target} in {report.seconds:.1f} s "
            f"({report.skipped:,} already there)"
        )
        for problem in report.verified.problems:
            print(f"problem   {problem.uri}: {problem.problem}")
        print("verified  ok" if report.verified.ok else "verified  FAILED")
    return 0 if report.verified.ok else 1


def lineage(args: argparse.Namespace) -> int:
    from tasks.lake import Lake
    from tasks.lakeops.lineage import lineage as find_lineage
    from tasks.lakeops.lineage import parse_reference, render

    name, version = parse_reference(args.model)
    found = find_lineage(Lake(args.lake), name, version)
    print(found.model_dump_json(indent=2) if args.json else render(found))
    return 0
