"""`evpipe plans lint DIR` and `evpipe plans diff OLD NEW`: check tracking plans before the gateway loads them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evpipe.settings import ClickHouseSettings, describe, load

LINT_DESCRIPTION = """\
Check every plan file (*.yaml, *.yml, *.json) of DIR as the gateway would load it: the file format, one
file per source, and each schema against the JSON Schema meta-schema. Every bad file's first problem is
printed as FILE: /JSON/POINTER: PROBLEM. Exit status: 0 when all are good, 1 otherwise, 2 when DIR is
not a directory. See docs/tracking-plans.md for the format."""

DIFF_DESCRIPTION = """\
Compare two versions of one plan file and classify every change as additive (a new event type, a new
optional property, a widened type, ...) or breaking (a removed event type or property, a narrowed type,
a new required property, additionalProperties turned false, a stricter mode). Exit status: 0 when every
change is additive, 1 when any is breaking, 2 when a file cannot be read."""



REPORT_DESCRIPTION = """\
Print the most frequent tracking-plan violations of the last --hours hours, by source, event type and
violation, counted over the events accepted in tag mode (or as tagged unplanned types) and loaded into
ClickHouse; read from the loader's view plan_violations_per_hour. Refused events (enforce) are not in
ClickHouse: they are on the invalid topic (`evpipe tail events.invalid`)."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    plans = subparsers.add_parser("plans", help="check and compare tracking plans (typed schemas per event type)")
    actions = plans.add_subparsers(dest="action", metavar="ACTION", required=True)
    lint = actions.add_parser("lint", help="validate a directory of plan files", description=LINT_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    lint.add_argument("directory", metavar="DIR", type=Path, help="the directory GATEWAY_TRACKING_PLANS names")
    lint.set_defaults(func=run_lint)
    diff = actions.add_parser("diff", help="classify the changes between two versions of a plan",
                              description=DIFF_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    diff.add_argument("old", metavar="OLD", type=Path, help="the plan file in force")
    diff.add_argument("new", metavar="NEW", type=Path, help="the proposed plan file")
    diff.set_defaults(func=run_diff)
    report = actions.add_parser("report", help="the top violations of tagged events (from ClickHouse)",
                                description=REPORT_DESCRIPTION, epilog=describe(ClickHouseSettings),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("--hours", type=int, default=24, help="how far back (default: 24, the last day)")
    report.add_argument("--limit", type=int, default=20, help="how many rows (default: 20)")
    report.add_argument("--source", help="only this source_id")
    report.set_defaults(func=run_report)


def run_lint(args: argparse.Namespace) -> int:
    from evpipe.plans.load import lint_directory, plan_files
    from evpipe.plans.model import PlanError

    try:
        files = plan_files(args.directory)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    errors = lint_directory(args.directory)
    for error in errors:
        print(error, file=sys.stderr)
    good = len(files) - len({e.file for e in errors})
    print(f"{len(files)} plan file(s), {good} good, {len(files) - good} with problems")
    return 1 if errors else 0

def run_diff(args: argparse.Namespace) -> int:
    from evpipe.plans.diff import diff_plans
    from evpipe.plans.load import load_file
    from evpipe.plans.model import PlanError

    try:
        old, new = load_file(args.old), load_file(args.new)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    changes = diff_plans(old, new)
    for change in changes:
        print(change.text())
    breaking = sum(c.breaking for c in changes)
    print(f"{len(changes)} change(s): {len(changes) - breaking} additive, {breaking} breaking")
    return 1 if breaking else 0


def run_report(args: argparse.Namespace) -> int:
    from evpipe.clickhouse import connect, redacted
    from evpipe.plans.report import render, top_violations

    if args.hours < 1 or args.limit < 1:
        print("error: --hours and --limit must be 1 or more", file=sys.stderr)
        return 2
    settings = load(ClickHouseSettings)
    try:
        client = connect(settings.clickhouse_url, settings.clickhouse_timeout_s)
        rows = top_violations(client, settings.clickhouse_database, args.hours, args.limit, args.source)
    except Exception as exc:  # noqa: BLE001 (reported, never a traceback)
        print(f"error: could not read plan_violations_per_hour from {redacted(settings.clickhouse_url)} "
              f"(database {settings.clickhouse_database}): {exc}\nHas a loader run since the violations field "
              "was added? It creates the view.", file=sys.stderr)
        return 1
    print(render(rows, args.hours))
    return 0
