"""The Kafka implementation of ``Source``, on confluent-kafka's ``Consumer``.

``poll`` turns librdkafka's message list into per-partition runs with C-level
passes (``map`` and ``groupby`` over method descriptors): the consuming
thread does almost no Python work per message, and the ``Message`` objects
die right away, which keeps it near the raw consume rate.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Collection
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumers.runtime.source import Fetched, Key, Rebalance, SourceError

log = logging.getLogger("evpipe.consumer")


class KafkaSource:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._consumer: Consumer | None = None  # created on subscribe: a loop that never runs never connects
        self._next_error_log = 0.0

    @property
    def consumer(self) -> Consumer:
        assert self._consumer is not None, "subscribe first"
        return self._consumer

    def subscribe(self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance) -> None:
        self._consumer = Consumer(self.config)
        self._consumer.subscribe(
            topics,
            on_assign=lambda _c, tps: on_assign(_keys(tps)),
            on_revoke=lambda _c, tps: on_revoke(_keys(tps)),
            on_lost=lambda _c, tps: on_lost(_keys(tps)),
        )

    def poll(self, max_messages: int, timeout: float) -> list[Fetched]:
        messages = self.consumer.consume(max_messages, timeout)
        if not messages:
            return []
        if any(map(Message.error, messages)):
            for msg in messages:
                err = msg.error()
                if err is not None:
                    self._error(err)
            messages = [m for m in messages if m.error() is None]
        return group_messages(messages)

    def pause(self, keys: Collection[Key]) -> None:
        self.consumer.pause(_partitions(keys))

    def resume(self, keys: Collection[Key]) -> None:
        # librdkafka resumes fetching at the last offset handed to us + 1; the buffer drops re-deliveries.
        try:
            self.consumer.resume(_partitions(keys))
        except KafkaException as exc:
            raise SourceError(str(exc)) from exc

    def commit(self, offsets: dict[Key, int]) -> None:
        tps = [TopicPartition(t, p, offset) for (t, p), offset in offsets.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            raise SourceError(str(exc)) from exc

    def positions(self, keys: Collection[Key]) -> dict[Key, int]:
        return {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(_partitions(keys))}

    def watermarks(self, key: Key, cached: bool) -> tuple[int, int]:
        try:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(*key), timeout=5, cached=cached)
        except KafkaException as exc:
            raise SourceError(str(exc)) from exc
        return low, high

    def committed(self, keys: Collection[Key]) -> dict[Key, int]:
        try:
            return {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(_partitions(keys), timeout=5)}
        except KafkaException as exc:
            raise SourceError(str(exc)) from exc

    def close(self) -> None:
        if self._consumer is not None:
            # Revokes (and drops) whatever is left and leaves the group; a static member
            # (CONSUMER_INSTANCE_ID) does not leave: its partitions wait for it up to the session timeout.
            self._consumer.close()

    def _error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.code() == KafkaError.FENCED_INSTANCE_ID or "FENCED_INSTANCE_ID" in err.str():
            raise KafkaException(KafkaError(err.code(), f"{err.str()}: another consumer joined the group with "
                                            "this CONSUMER_INSTANCE_ID; each process needs its own id", fatal=True))
        if err.fatal():
            raise KafkaException(err)
        now = time.monotonic()
        if now >= self._next_error_log:  # transient errors repeat every poll; log them sparingly
            self._next_error_log = now + 10
            hint = " (create it: `evpipe topics create`)" if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART else ""
            log.warning("consumer error (librdkafka retries): %s%s", err, hint)


def group_messages(messages: list[Message]) -> list[Fetched]:
    """Error-free messages as one run per partition, in the order librdkafka handed them out."""
    runs: list[Fetched] = []
    topics = set(map(Message.topic, messages))
    for topic in topics:
        of_topic = messages if len(topics) == 1 else [m for m in messages if m.topic() == topic]
        # librdkafka hands out fetched runs per partition; regroup in case runs interleave
        groups: dict[int, list[Message]] = {}
        # The stubs type topic/partition/offset/value as optional; for a message without
        # an error, librdkafka always sets them.
        for partition, run in itertools.groupby(of_topic, Message.partition):
            groups.setdefault(partition, []).extend(run)  # type: ignore[arg-type]
        for partition, group in groups.items():
            runs.append(Fetched(topic, partition, list(map(Message.offset, group)),  # type: ignore[arg-type]
                                list(map(Message.value, group))))  # type: ignore[arg-type]
    return runs


def _keys(partitions: list[TopicPartition]) -> list[Key]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _partitions(keys: Collection[Key]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in keys]
