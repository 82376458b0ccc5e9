"""Test helpers: build wire-format events with chosen received_at values and produce them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.envelope import Enrichment, EventValidator, format_timestamp

BASE = dt.datetime(2026, 11, 21, 10, 0, 0, tzinfo=dt.UTC)
_VALIDATOR = EventValidator()


def events(n: int, hours: int = 1, start: dt.datetime = BASE) -> Iterator[tuple[bytes, bytes, str, dt.datetime]]:
    """(key, value, event_id, received_at) for n events spread evenly over ``hours`` hours."""
    span = dt.timedelta(hours=hours)
    for i in range(n):
        received = start + span * i / max(n, 1)
        enrichment = Enrichment(source_id="src", received_at=format_timestamp(received), ip="10.0.0.1")
        key, value, event = _VALIDATOR.encode(
            {"type": "page_view", "user_id": f"u{i % 97}", "properties": {"i": i}}, enrichment
        )
        yield key, value, event["event_id"], received.replace(microsecond=received.microsecond // 1000 * 1000)


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 5000,
                         "queue.buffering.max.messages": 1_000_000})
    count = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "producer did not deliver everything"
    return count


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from evpipe.kafka import create_topics
    from evpipe.settings import KafkaSettings

    create_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), [topic], partitions=partitions)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:  # type: ignore[type-arg]
    """Every message of a topic (until ``expected`` are read or the timeout)."""
    import time
    import uuid

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000, "fetch.queue.backoff.ms": 10})
    consumer.subscribe([topic])
    found = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    found.append(msg)
    finally:
        consumer.close()
    return found
