"""Read a topic from a point in time to its current end, without joining a consumer group.

Used by the dead-letter tools: they inspect a topic rather than consume it, so
they assign partitions directly and never commit.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Message, TopicPartition

from evpipe.kafka import client_config
from evpipe.settings import KafkaSettings


class TopicMissing(RuntimeError):
    pass


def read_topic(settings: KafkaSettings, topic: str, since: dt.datetime | None = None,
               idle_timeout: float = 2.0, timeout: float = 15.0) -> Iterator[Message]:
    """Yield every message of ``topic`` (from ``since`` if given) that exists when the read starts.

    Stops once every partition reached the high watermark seen at the start and
    nothing more arrived for ``idle_timeout`` seconds (some brokers report a low
    watermark estimate, so the idle wait is what guarantees we drained).
    """
    consumer = Consumer(client_config(settings) | {
        "group.id": "evpipe-inspect", "enable.auto.commit": False, "fetch.queue.backoff.ms": 10,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise TopicMissing(f"topic {topic!r} does not exist on {settings.kafka_bootstrap_servers}")
        partitions = sorted(metadata.partitions)
        starts = _start_offsets(consumer, topic, partitions, since, timeout)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        position = dict.fromkeys(partitions, -1)
        last_message = time.monotonic()
        while True:
            messages = consumer.consume(500, 0.2)
            for message in messages:
                if message.error() is None:
                    position[message.partition() or 0] = message.offset() or 0
                    yield message
            if messages:
                last_message = time.monotonic()
            caught_up = all(position[p] + 1 >= ends[p] for p in partitions)
            if caught_up and time.monotonic() - last_message >= idle_timeout:
                return
    finally:
        consumer.close()


def _start_offsets(consumer: Consumer, topic: str, partitions: list[int], since: dt.datetime | None,
                   timeout: float) -> dict[int, int]:
    if since is None:
        return dict.fromkeys(partitions, OFFSET_BEGINNING)
    millis = int(since.timestamp() * 1000)
    found = consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout)
    # -1: nothing at or after `since` in that partition.
    return {tp.partition: tp.offset if tp.offset >= 0 else OFFSET_END for tp in found}
