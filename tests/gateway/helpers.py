"""Shared helpers for the gateway tests: settings per backend and reading back what was stored."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from evpipe.kafka import create_topics
from gateway.settings import GatewaySettings

KEYS = "key-a=source_a,key-b=source_b"
AUTH_A = {"Authorization": "Bearer key-a"}


def kafka_settings(bootstrap: str, topic: str, partitions: int = 3, **overrides: Any) -> GatewaySettings:
    # The fallback is off unless a test turns it on: these tests check what Kafka itself answers.
    settings = GatewaySettings(
        kafka_bootstrap_servers=bootstrap, kafka_topic=topic, kafka_invalid_topic=f"{topic}.invalid",
        gateway_api_keys=KEYS, **({"gateway_fallback_uri": ""} | overrides),
    )
    create_topics(settings, [topic, f"{topic}.invalid"], partitions=partitions)
    return settings


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "page_view", "anonymous_id": "anon-1", **fields}


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic`` from the start (stops at ``expected`` messages or on timeout)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    messages.append(msg)
        # Keep reading briefly so a test can see an unexpected surplus.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            messages.extend(m for m in consumer.consume(1000, 0.2) if m.error() is None)
        return messages
    finally:
        consumer.close()


def values(messages: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value()) for m in messages]
