"""The fallback against a real broker: stored messages come back on their topics exactly as the gateway
would have produced them (key, value, headers), and a drain of a local store empties it into Kafka."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.backends.base import Message, Record, Rejected
from gateway.backends.kafka import KafkaBackend
from gateway.fallback.drain import Drainer
from gateway.fallback.local import LocalFallbackStore
from gateway.fallback.objects import encode, object_name
from gateway.metrics import FallbackMetrics
from tests.gateway.helpers import kafka_settings, read_topic
from tests.providers import Service

pytestmark = pytest.mark.slow  # needs the broker


def test_messages_are_what_send_produces_and_produce_keeps_them_exact(kafka: Service, topic: str) -> None:
    backend = KafkaBackend(kafka_settings(kafka.url, topic, partitions=1))
    records = [Record(b"src:u1", b'{"event_id":"a"}', {}), Record(b"src:u2", b'{"event_id":"b"}', {})]
    rejected = [Rejected(0, "type: must be a string", {"type": 5}, "src", "2026-01-01T00:00:00.000Z")]
    messages = backend.messages(records, rejected)
    assert [(m.topic, m.key, m.value) for m in messages[:2]] == [(topic, b"src:u1", b'{"event_id":"a"}'),
                                                                (topic, b"src:u2", b'{"event_id":"b"}')]
    assert messages[2].topic == f"{topic}.invalid" and messages[2].headers == (("error", b"type: must be a string"),)

    async def run() -> None:
        await backend.start()
        try:
            await backend.produce(messages, 20)
        finally:
            await backend.close()

    asyncio.run(run())
    events = read_topic(kafka.url, topic, 2)
    assert [(m.key(), m.value()) for m in events] == [(b"src:u1", b'{"event_id":"a"}'), (b"src:u2", b'{"event_id":"b"}')]
    invalid = read_topic(kafka.url, f"{topic}.invalid", 1)
    assert [(m.key(), m.value(), m.headers()) for m in invalid] == [
        (b"src", messages[2].value, [("error", b"type: must be a string")])]


def test_a_drain_empties_a_local_store_into_kafka(kafka: Service, topic: str, tmp_path: Path) -> None:
    backend = KafkaBackend(kafka_settings(kafka.url, topic))
    store = LocalFallbackStore(tmp_path)
    for n in range(3):
        batch = [Message(topic, f"src:u{i}".encode(), f'{{"n":{n},"i":{i}}}'.encode()) for i in range(50)]
        store.put(object_name(time.time(), len(batch), "w1", n), encode(batch))
    metrics = FallbackMetrics(CollectorRegistry())

    async def run() -> int:
        await backend.start()
        try:
            report = await Drainer(store, backend, metrics, "t1", 30).drain_pass(backend.ready)
            return report.events
        finally:
            await backend.close()

    assert asyncio.run(run()) == 150
    assert store.pending() == []
    values = sorted(m.value() for m in read_topic(kafka.url, topic, 150))
    assert len(values) == 150 and len(set(values)) == 150


def test_evpipe_fallback_status_and_drain(kafka: Service, topic: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    kafka_settings(kafka.url, topic)  # creates the topics
    store = LocalFallbackStore(tmp_path / "fallback")
    for n in range(2):
        batch = [Message(topic, f"src:u{i}".encode(), f'{{"n":{n},"i":{i}}}'.encode()) for i in range(10)]
        store.put(object_name(time.time() - 120, len(batch), "w1", n), encode(batch))
    env = os.environ | {"GATEWAY_FALLBACK_URI": str(tmp_path / "fallback"), "KAFKA_BOOTSTRAP_SERVERS": kafka.url,
                        "KAFKA_TOPIC": topic, "KAFKA_INVALID_TOPIC": f"{topic}.invalid", "GATEWAY_LOG_LEVEL": "warning"}

    def evpipe(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "evpipe", "fallback", *args], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "2 objects, 20 events pending, oldest written 12" in evpipe("status")
    assert "drained 20 events in 2 objects; 0 objects (0 events) left" in evpipe("drain")
    assert store.pending() == [] and len(read_topic(kafka.url, topic, 20)) == 20
    off = subprocess.run([sys.executable, "-m", "evpipe", "fallback", "status"], env=env | {"GATEWAY_FALLBACK_URI": ""},
                         capture_output=True, text=True, timeout=60)
    assert off.returncode != 0 and "fallback is off" in off.stderr


def test_an_object_larger_than_the_producer_queue_still_drains(kafka: Service, topic: str) -> None:
    # 300 stored messages, a queue of 40: produced a quarter of the queue at a time (it once waited forever).
    backend = KafkaBackend(kafka_settings(kafka.url, topic, gateway_max_queued_events=40))
    messages = [Message(topic, f"src:u{i % 7}".encode(), f'{{"i":{i}}}'.encode()) for i in range(300)]

    async def run() -> None:
        await backend.start()
        try:
            await backend.produce(messages, 30)
        finally:
            await backend.close()

    asyncio.run(run())
    assert len(read_topic(kafka.url, topic, 300)) == 300
