"""`evpipe tail TOPIC`: print a topic's messages as JSON lines, from any Kafka (the local broker included)."""

from __future__ import annotations

import argparse
import os
import re
import sys

from evpipe.settings import KafkaSettings, describe, load
from evpipe.tail.fromtime import FORMS, BadTime, parse_from_time

DESCRIPTION = """\
Print the messages of TOPIC, one JSON object per line:
  {"topic", "partition", "offset", "timestamp", "key", "headers", "value"}
Keys, header values and values are printed as text, or as {"base64": ...} when they are not UTF-8; the
timestamp is ISO 8601 UTC. The consumer is assigned its partitions: it joins no consumer group and commits
nothing, so it never disturbs the archivers' and loaders' groups.

Where it starts: --from-beginning, --from-time, or else the end (only messages that arrive from now on,
which implies --follow). Without --follow it stops at the end each partition had when it started, or after
-n messages."""

EXAMPLES = """\
examples:
  evpipe tail events -n 5 --from-beginning        the first five events
  evpipe tail events                              new events as they arrive (Ctrl-C stops)
  evpipe tail events.invalid --from-time 1h       what the gateway refused in the last hour
  evpipe tail events --from-time 2026-12-04T10:00Z --grep '"type":"signup"' -n 20
  evpipe tail events.dlq --from-beginning | jq '.headers.error'
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tail = subparsers.add_parser(
        "tail", help="print a topic's messages as JSON lines (any Kafka, the local broker included)",
        description=DESCRIPTION, epilog=EXAMPLES + "\n" + describe(KafkaSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tail.add_argument("topic", metavar="TOPIC", help="the topic to read, e.g. events, events.invalid, events.dlq")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at each partition's oldest message")
    start.add_argument("--from-time", metavar="TIME", type=_from_time,
                       help=f"start at the first message at or after TIME: {FORMS}")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="at the end, wait for new messages instead of stopping (Ctrl-C stops)")
    tail.add_argument("-p", "--partition", metavar="N", type=int, action="append",
                      help="read only partition N (repeatable; default: all)")
    tail.add_argument("-n", "--max-messages", metavar="N", type=_positive, help="stop after printing N messages")
    tail.add_argument("--grep", metavar="REGEX", type=_regex,
                      help="print only messages whose value matches REGEX (Python syntax; -n counts these)")
    tail.set_defaults(func=run)


def _from_time(text: str) -> int:
    try:
        return parse_from_time(text)
    except BadTime as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return int(text)


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from evpipe.tail.errors import TailError
    from evpipe.tail.output import message_line
    from evpipe.tail.reader import TailOptions, tail, tail_consumer

    settings = load(KafkaSettings)
    options = TailOptions(args.topic, args.from_beginning, args.from_time, args.follow, args.partition,
                          args.max_messages, args.grep)
    consumer = tail_consumer(settings)
    try:
        for message in tail(consumer, options):
            sys.stdout.buffer.write(message_line(message) + b"\n")
            sys.stdout.flush()  # each line as it comes: a tail is read live, often through a pipe
    except TailError as exc:
        print(f"evpipe tail: error: {exc} (KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers})",
              file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (| head): not an error. Point stdout at /dev/null so exiting does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        consumer.close()
    return 0
