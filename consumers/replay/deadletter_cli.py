"""`evpipe dlq show|redrive`: inspect dead letters and re-produce them after a fix."""

from __future__ import annotations

import argparse

from consumers.replay.cli import _iso
from evpipe.settings import KafkaSettings, describe, load


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = subparsers.add_parser("dlq", help="list dead-lettered events with their reasons, or redrive them")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--topic", help="dead-letter topic (default: KAFKA_DLQ_TOPIC, i.e. events.dlq)")
    common.add_argument("--since", type=_iso, metavar="ISO", help="only letters dead-lettered at or after this time")
    common.add_argument("--filter", metavar="TEXT", help="only letters whose reason or payload contains TEXT")
    extra = {"epilog": describe(KafkaSettings), "formatter_class": argparse.RawDescriptionHelpFormatter}
    show = actions.add_parser("show", parents=[common], help="list dead letters with their reasons", **extra)
    show.add_argument("--limit", type=int, default=100, help="print at most N letters (default 100)")
    show.set_defaults(func=run_show)
    redrive = actions.add_parser(
        "redrive", parents=[common], help="re-produce matching dead letters to the main topic",
        description="Re-produce the matching dead letters to the main topic (KAFKA_TOPIC) after the cause was "
        "fixed. The loader deduplicates by event_id, so a letter redriven twice still counts once.", **extra)
    redrive.add_argument("--to-topic", help="target topic (default: KAFKA_TOPIC)")
    redrive.add_argument("--dry-run", action="store_true", help="count what would be redriven, produce nothing")
    redrive.set_defaults(func=run_redrive)


def run_show(args: argparse.Namespace) -> int:
    from consumers.replay.deadletter import dead_letters
    from consumers.replay.reader import TopicMissing
    from evpipe.table import render_table

    settings = load(KafkaSettings)
    rows: list[dict[str, object]] = []
    total = matched = 0
    try:
        for letter, is_match in dead_letters(settings, args.topic or settings.kafka_dlq_topic, args.since, args.filter):
            total += 1
            if is_match:
                matched += 1
                if len(rows) < args.limit:
                    rows.append(letter.row())
    except TopicMissing as exc:
        print(f"error: {exc}")
        return 1
    print(render_table(rows))
    print(f"\n{matched} matching of {total} dead letters" + (f" (showing {len(rows)})" if matched > len(rows) else ""))
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from consumers.replay.deadletter import dead_letters, redrive
    from consumers.replay.reader import TopicMissing

    settings = load(KafkaSettings)
    target = args.to_topic or settings.kafka_topic
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("reading dead letters", total=None)
            summary = redrive(settings, dead_letters(settings, args.topic or settings.kafka_dlq_topic, args.since,
                                                     args.filter),
                              target, dry_run=args.dry_run, progress=lambda _l, _m: bar.advance(task))
    except TopicMissing as exc:
        print(f"error: {exc}")
        return 1
    verb = "would redrive" if args.dry_run else "redriven"
    print(f"read {summary.read}, matched {summary.matched}, {verb} {summary.matched if args.dry_run else summary.redriven}"
          f" to {target}, failed {summary.failed}")
    return 1 if summary.failed else 0
