"""`evpipe plans lint DIR` and `evpipe plans diff OLD NEW`: check tracking plans before the gateway loads them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
