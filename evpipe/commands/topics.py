"""`evpipe topics create`: create the pipeline's topics with the configured partition counts."""

from __future__ import annotations

import argparse

from evpipe.settings import KafkaSettings, describe, load


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    topics = subparsers.add_parser("topics", help="manage the pipeline's Kafka topics")
    actions = topics.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create the events, overflow, invalid, dead-letter and replay topics (existing ones are kept)",
        epilog=describe(KafkaSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--partitions", type=int, help="partition count (default: KAFKA_PARTITIONS)")
    create.add_argument("--topic", action="append", help="create only this topic (repeatable)")
    create.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    from evpipe.kafka import create_topics, pipeline_topics

    settings = load(KafkaSettings)
    topics = args.topic or pipeline_topics(settings)
    try:
        result = create_topics(settings, topics, partitions=args.partitions)
    except Exception as exc:  # noqa: BLE001 (deliberate: reported, never swallowed silently)
        print(f"error: could not create topics on {settings.kafka_bootstrap_servers}: {exc}\n"
              "Is the broker running? Start the local one with `evpipe dev up`.")
        return 1
    for topic, state in sorted(result.items()):
        print(f"{topic:<24} {state}")
    return 0
