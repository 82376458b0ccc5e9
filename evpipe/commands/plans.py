"""`evpipe plans lint DIR`: check tracking plans before the gateway loads them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LINT_DESCRIPTION = """\
Check every plan file (*.yaml, *.yml, *.json) of DIR as the gateway would load it: the file format, one
file per source, and each schema against the JSON Schema meta-schema. Every bad file's first problem is
printed as FILE: /JSON/POINTER: PROBLEM. Exit status: 0 when all are good, 1 otherwise, 2 when DIR is
not a directory. See docs/tracking-plans.md for the format."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    plans = subparsers.add_parser("plans", help="check and compare tracking plans (typed schemas per event type)")
    actions = plans.add_subparsers(dest="action", metavar="ACTION", required=True)
    lint = actions.add_parser("lint", help="validate a directory of plan files", description=LINT_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    lint.add_argument("directory", metavar="DIR", type=Path, help="the directory GATEWAY_TRACKING_PLANS names")
    lint.set_defaults(func=run_lint)


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

