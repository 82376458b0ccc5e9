"""`evpipe dev up|down|status`: run the local stack without Docker."""

from __future__ import annotations

import argparse

from evpipe.settings import describe, load


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from infra.local.stack import StackSettings

    dev = subparsers.add_parser("dev", help="start, stop or inspect the local stack (no Docker needed)")
    actions = dev.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = {"epilog": describe(StackSettings), "formatter_class": argparse.RawDescriptionHelpFormatter}
    up = actions.add_parser("up", help="start the broker (and with --s3 a Ceph S3 gateway); reuse running ones",
                            **common)
    up.add_argument("--s3", action="store_true", help="also start Ceph RGW as a local S3 server (~20 s)")
    up.set_defaults(func=run_up)
    actions.add_parser("status", help="show what runs and whether it is healthy", **common).set_defaults(
        func=run_status)
    actions.add_parser("down", help="stop what `dev up` started", **common).set_defaults(func=run_down)


def _print(rows: list) -> None:  # type: ignore[type-arg]
    for row in rows:
        mark = "ok  " if row.healthy else "--  "
        print(f"{mark}{row.name:<12} {row.detail}")


def run_up(args: argparse.Namespace) -> int:
    from infra.local.daemon import StartError
    from infra.local.stack import StackSettings, up

    try:
        rows = up(load(StackSettings), with_s3=args.s3)
    except StartError as exc:
        print(f"error: {exc}")
        return 1
    _print(rows)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from infra.local.stack import StackSettings, status

    rows = status(load(StackSettings))
    _print(rows)
    return 0 if all(r.healthy for r in rows) else 1


def run_down(args: argparse.Namespace) -> int:
    from infra.local.stack import StackSettings, down

    _print(down(load(StackSettings)))
    return 0
