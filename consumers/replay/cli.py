"""`evpipe replay`: move a stopped consumer group's offsets, or backfill from the archive."""

from __future__ import annotations

import argparse
import datetime as dt

from evpipe.settings import KafkaSettings, describe, load


def _iso(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r} (e.g. 2026-11-21T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _partitions(value: str) -> list[int]:
    try:
        return [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated partition numbers, got {value!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = subparsers.add_parser("replay", help="reset consumer-group offsets or backfill from the archive")
    actions = replay.add_subparsers(dest="action", metavar="ACTION", required=True)
    offsets = actions.add_parser(
        "offsets",
        help="reset a stopped consumer group's offsets (dry run unless --execute)",
        description="Reset a stopped consumer group's committed offsets on one topic. Without --execute it only "
        "prints the plan per partition. Refuses while the group has active members. Sinks are idempotent "
        "(archive file names and ClickHouse dedup tokens), so re-reading events does not duplicate them.",
        epilog=describe(KafkaSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    offsets.add_argument("--group", required=True, help="consumer group, e.g. evpipe-loader")
    offsets.add_argument("--topic", required=True, help="topic whose offsets move")
    where = offsets.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-datetime", type=_iso, metavar="ISO", help="first offset at or after this time")
    where.add_argument("--to-earliest", action="store_true", help="the oldest retained offset")
    where.add_argument("--to-latest", action="store_true", help="the end of the partition (skip the backlog)")
    where.add_argument("--shift-by", type=int, metavar="N", help="move by N (negative: re-read N messages)")
    offsets.add_argument("--partitions", type=_partitions, help="comma-separated partitions (default: all)")
    offsets.add_argument("--execute", action="store_true", help="apply the plan (default: dry run)")
    offsets.set_defaults(func=run_offsets)


def run_offsets(args: argparse.Namespace) -> int:
    from consumers.replay.offsets import OffsetResetter, ReplayError, Target
    from evpipe.table import render_table

    settings = load(KafkaSettings)
    target = Target(to_datetime=args.to_datetime, to_earliest=args.to_earliest, to_latest=args.to_latest,
                    shift_by=args.shift_by)
    resetter = OffsetResetter(settings)
    try:
        resetter.ensure_group_stopped(args.group)
        plans = resetter.plan(args.group, args.topic, target, args.partitions)
        print(render_table([p.row() for p in plans]))
        if not args.execute:
            print("\ndry run: nothing changed; add --execute to apply")
            return 0
        resetter.execute(args.group, args.topic, plans)
    except ReplayError as exc:
        print(f"error: {exc}")
        return 1
    print(f"\nreset {len(plans)} partition(s) of {args.topic} for group {args.group}")
    return 0
