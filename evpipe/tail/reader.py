"""The tail itself: messages of one topic in the order they arrive, until the end, a count, or forever.

The consumer is assigned its partitions (no group is joined, nothing is committed), so a tail never moves a
consumer group's offsets and never triggers a rebalance. Without ``follow``, each partition stops at the end
it had when the tail began (see positions.py): at an end-of-partition event, or at the last offset before
that end, whichever comes first; messages written after the start are not printed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from evpipe.kafka import client_config
from evpipe.settings import KafkaSettings
from evpipe.tail.errors import TailError, position, raise_unless_retriable
from evpipe.tail.positions import end_offsets, start_offsets, topic_partitions

# Without --follow, partitions that send neither a message nor an end-of-partition event for this long mean
# the broker stopped answering: better an error than a tail that never ends.
QUIET_S = 15.0


@dataclass(frozen=True)
class TailOptions:
    topic: str
    from_beginning: bool = False
    from_time_ms: int | None = None
    follow: bool = False
    partitions: list[int] | None = None
    limit: int | None = None
    grep: re.Pattern[str] | None = None

    @property
    def starts_at_end(self) -> bool:
        return not self.from_beginning and self.from_time_ms is None

    @property
    def follows(self) -> bool:
        # At the end there is nothing before to print: only following makes sense there.
        return self.follow or self.starts_at_end


def tail_consumer(settings: KafkaSettings) -> Consumer:
    """A consumer for assign(): group.id is required by the client, but no group is joined or committed to."""
    return Consumer(client_config(settings) | {
        "group.id": "evpipe-tail",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",  # a start offset deleted by retention meanwhile: the oldest left
        "fetch.wait.max.ms": 100,  # an empty fetch answers (end-of-partition) in 0.1 s instead of 0.5 s
        "fetch.queue.backoff.ms": 10,
        "log.connection.close": False,
    })


def tail(consumer: Consumer, options: TailOptions) -> Iterator[Message]:
    """The messages to print, in arrival order (ordered within each partition)."""
    partitions = topic_partitions(consumer, options.topic, options.partitions)
    ends = end_offsets(consumer, options.topic, partitions)
    starts = start_offsets(consumer, options.topic, ends, options.from_beginning, options.from_time_ms)
    consumer.assign([TopicPartition(options.topic, p, starts[p]) for p in partitions])
    stops = Stops(consumer, options.topic, ends, None if options.follows else partitions)
    stops.skip_empty(starts)
    printed = 0
    while not stops.all_done():
        message = consumer.poll(0.5)
        if message is None:
            stops.check_quiet()
            continue
        if not stops.keep(message) or not _wanted(message, options):
            continue
        yield message
        printed += 1
        if options.limit is not None and printed >= options.limit:
            return


class Stops:
    """Which partitions are done, without --follow; with it (``pending`` None), none ever is."""

    def __init__(self, consumer: Consumer, topic: str, ends: dict[int, int], pending: list[int] | None) -> None:
        self.consumer, self.topic, self.ends = consumer, topic, ends
        self.pending = None if pending is None else set(pending)
        self.last_event = time.monotonic()

    def all_done(self) -> bool:
        return self.pending is not None and not self.pending

    def skip_empty(self, starts: dict[int, int]) -> None:
        """Partitions with nothing between their start and their end are done before they are read."""
        for partition, start in starts.items():
            if self.ends[partition] == 0 or 0 <= self.ends[partition] <= start:
                self._done(partition)

    def keep(self, message: Message) -> bool:
        """Whether ``message`` is one to print; notes the ends it shows."""
        self.last_event = time.monotonic()
        error = message.error()
        if error is not None and error.code() != KafkaError._PARTITION_EOF:
            raise_unless_retriable(error)
            return False
        partition, offset = position(message)
        if error is not None:  # the end of the partition
            self._done(partition)
            return False
        if self.pending is None:
            return True
        if offset >= self.ends[partition] - 1:
            self._done(partition)
        return offset < self.ends[partition]

    def check_quiet(self) -> None:
        if self.pending and time.monotonic() - self.last_event > QUIET_S:
            raise TailError(f"partitions {sorted(self.pending)} sent nothing and no end-of-partition event for "
                            f"{QUIET_S:.0f}s; is the broker still up?")

    def _done(self, partition: int) -> None:
        if self.pending is not None and partition in self.pending:
            self.pending.discard(partition)
            self.consumer.pause([TopicPartition(self.topic, partition)])  # no more fetches for it


def _wanted(message: Message, options: TailOptions) -> bool:
    """--from-time (also client-side: Tansu's offsets_for_times answers 0) and --grep on the value."""
    if options.from_time_ms is not None:
        kind, ms = message.timestamp()
        if kind and ms < options.from_time_ms:
            return False
    if options.grep is not None:
        value: Any = message.value()
        return value is not None and options.grep.search(value.decode(errors="replace")) is not None
    return True
