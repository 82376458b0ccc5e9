"""`evpipe dev up|demo|status|down`: run the local stack without Docker."""

from __future__ import annotations

import argparse

from evpipe.settings import describe, load


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from evpipe.local.stack import StackSettings

    dev = subparsers.add_parser("dev", help="start, stop or inspect the local stack (no Docker needed)")
    actions = dev.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = {"epilog": describe(StackSettings), "formatter_class": argparse.RawDescriptionHelpFormatter}
    up = actions.add_parser(
        "up", help="start the broker, topics, gateway, archiver and loader (supervised); reuse running ones",
        description="Start the local broker, create the topics, and run the gateway, the archiver (Parquet "
        "under <state>/archive) and the loader (embedded ClickHouse) as supervised daemons (restarted when "
        "they die; pid and log files under the state directory). Whatever already runs is reused.", **common)
    up.add_argument("--s3", action="store_true", help="also start Ceph RGW as a local S3 server (~20 s)")
    up.add_argument("--broker-only", action="store_true", help="start only the broker, not the pipeline")
    up.set_defaults(func=run_up)
    demo = actions.add_parser(
        "demo", help="send a sample workload through the running stack and print what arrived",
        description="Send a deterministic sample workload (several event types, users, two sources with "
        "their own API keys) to the local gateway, wait until ClickHouse shows all of it, and print events "
        "per source and type and the archive files. The same events (same event_ids) are sent on every run, "
        "so a second run changes no count.", **common)
    demo.add_argument("--events", type=int, default=5000, help="how many events to send (default: 5000)")
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the data (default: 180)")
    demo.set_defaults(func=run_demo)
    actions.add_parser("status", help="show what runs and whether it is healthy", **common).set_defaults(
        func=run_status)
    actions.add_parser("down", help="stop what `dev up` started (pipeline first, then the broker)",
                       **common).set_defaults(func=run_down)


def _print(rows: list) -> None:  # type: ignore[type-arg]
    for row in rows:
        mark = "ok  " if row.healthy else "--  "
        print(f"{mark}{row.name:<12} {row.detail}", flush=True)


def run_up(args: argparse.Namespace) -> int:
    from evpipe.local.daemon import StartError
    from evpipe.local.stack import StackSettings, up

    try:
        rows = up(load(StackSettings), with_s3=args.s3, broker_only=args.broker_only)
    except StartError as exc:
        print(f"error: {exc}")
        return 1
    _print(rows)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from evpipe.local.demo import DemoError, run
    from evpipe.local.stack import StackSettings

    try:
        run(load(StackSettings), args.events, args.timeout)
    except DemoError as exc:
        print(f"error: {exc}")
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    from evpipe.local.stack import StackSettings, status

    rows = status(load(StackSettings))
    _print(rows)
    return 0 if all(r.healthy for r in rows) else 1


def run_down(args: argparse.Namespace) -> int:
    from evpipe.local.stack import StackSettings, down

    _print(down(load(StackSettings)))
    return 0
