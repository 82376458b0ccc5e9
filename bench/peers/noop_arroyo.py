"""Child process: Arroyo's ``RunTask`` with a no-op function, then ``CommitOffsets`` (``python -m bench.peers.noop_arroyo``).

Arroyo's defaults otherwise: one message per poll, offsets committed synchronously at most once a
second (``StreamProcessor``'s default commit policy), librdkafka's auto-commit left off (see below). With ``--record FILE`` the function appends
``partition offset`` to FILE with ``os.write`` on an O_APPEND descriptor: each call's side effect
is in the kernel before the function returns, so a kill -9 loses none, and a message processed
twice (redelivered after a kill, its offset not yet committed) shows as a repeated line.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from arroyo.backends.kafka import KafkaConsumer, KafkaPayload, build_kafka_consumer_configuration
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import CommitOffsets, ProcessingStrategy, ProcessingStrategyFactory, RunTask
from arroyo.types import BrokerValue, Commit, Message, Partition, Topic


class NoopFactory(ProcessingStrategyFactory[KafkaPayload]):
    def __init__(self, function: Callable[[Message[KafkaPayload]], None]) -> None:
        self.function = function

    def create_with_partitions(self, commit: Commit,
                               partitions: Mapping[Partition, int]) -> ProcessingStrategy[KafkaPayload]:
        return RunTask(self.function, CommitOffsets(commit))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--first", type=Path, required=True, help="file to write the first message's time to")
    parser.add_argument("--record", type=Path, help="file to append each processed offset to (kill tests)")
    args = parser.parse_args()
    record = os.open(args.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if args.record else -1
    seen = [False]

    def first(message: Message[Any]) -> None:
        if not seen[0]:
            seen[0] = True
            args.first.write_text(repr(time.time()))

    def noop(message: Message[KafkaPayload]) -> None:
        first(message)

    def noop_recorded(message: Message[KafkaPayload]) -> None:
        first(message)
        value = message.value
        assert isinstance(value, BrokerValue)  # a message read from Kafka knows its partition and offset
        os.write(record, f"{value.partition.index} {value.offset}\n".encode())

    config = build_kafka_consumer_configuration(
        # The same Tansu-friendly settings every consumer in this bench gets (see bench/peers/__init__.py).
        {"bootstrap.servers": args.bootstrap, "fetch.queue.backoff.ms": 10, "session.timeout.ms": 6000},
        # The builder's default hands commits to librdkafka's auto-commit (every 5 s, auto.commit.interval.ms),
        # so CommitOffsets would only stage offsets; off, its commits are real: at most once a second.
        group_id=args.group, auto_offset_reset="earliest", enable_auto_commit=False)
    processor = StreamProcessor(KafkaConsumer(config), Topic(args.topic),
                                NoopFactory(noop_recorded if args.record else noop))

    def stop(signum: int, frame: FrameType | None) -> None:
        processor.signal_shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processor.run()


if __name__ == "__main__":
    main()
