"""`evpipe replay offsets`: dry-run plans, resets, and refusal while the group is live."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.replay.offsets import OffsetResetter, ReplayError, Target
from evpipe.kafka import consumer_config, create_topics, producer_config
from evpipe.settings import KafkaSettings
from tests.providers import Service

PER_PARTITION = 6


def _produce_one_by_one(settings: KafkaSettings, topic: str, partitions: int) -> dt.datetime:
    """Produce PER_PARTITION messages per partition; returns a time between the halves."""
    producer = Producer(producer_config(settings, **{"linger.ms": 0}))
    middle = dt.datetime.now(dt.UTC)
    for i in range(PER_PARTITION):
        if i == PER_PARTITION // 2:
            time.sleep(0.05)
            middle = dt.datetime.now(dt.UTC)
            time.sleep(0.05)
        for p in range(partitions):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p)
            producer.flush(10)  # one message per batch keeps every broker's watermarks exact
    return middle


def _commit(settings: KafkaSettings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer(consumer_config(settings, group))
    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    consumer.close()


@pytest.fixture
def loaded_topic(kafka: Service, topic: str) -> tuple[KafkaSettings, str, dt.datetime]:
    settings = KafkaSettings(kafka_bootstrap_servers=kafka.url)
    create_topics(settings, [topic], partitions=2)
    middle = _produce_one_by_one(settings, topic, 2)
    return settings, topic, middle


def test_plans_for_each_target(loaded_topic: tuple[KafkaSettings, str, dt.datetime]) -> None:
    settings, topic, middle = loaded_topic
    group = topic + "-g"
    _commit(settings, group, topic, {0: 4, 1: 5})
    resetter = OffsetResetter(settings)
    earliest = resetter.plan(group, topic, Target(to_earliest=True))
    assert [(p.partition, p.current, p.new, p.high) for p in earliest] == [(0, 4, 0, 6), (1, 5, 0, 6)]
    assert [p.row()["lag change"] for p in earliest] == [4, 5]
    latest = resetter.plan(group, topic, Target(to_latest=True))
    assert [p.new for p in latest] == [6, 6]
    shifted = resetter.plan(group, topic, Target(shift_by=-2), partitions=[1])
    assert [(p.partition, p.new) for p in shifted] == [(1, 3)]
    clamped = resetter.plan(group, topic, Target(shift_by=-100))
    assert [p.new for p in clamped] == [0, 0]
    by_time = resetter.plan(group, topic, Target(to_datetime=middle))
    assert [p.new for p in by_time] == [PER_PARTITION // 2] * 2


def test_datetime_after_the_last_message_goes_to_the_end(
    kafka: Service, loaded_topic: tuple[KafkaSettings, str, dt.datetime]
) -> None:
    if kafka.provider == "local:tansu":
        pytest.skip("Tansu 0.6 answers a ListOffsets time past the last message with 0 instead of -1 (Kafka's end)")
    settings, topic, middle = loaded_topic
    future = OffsetResetter(settings).plan(topic + "-g", topic, Target(to_datetime=middle + dt.timedelta(days=1)))
    assert [p.new for p in future] == [6, 6]


def test_execute_moves_committed_offsets(loaded_topic: tuple[KafkaSettings, str, dt.datetime]) -> None:
    settings, topic, _ = loaded_topic
    group = topic + "-g"
    _commit(settings, group, topic, {0: 6, 1: 6})
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    argv = [sys.executable, "-m", "evpipe", "replay", "offsets", "--group", group, "--topic", topic, "--shift-by", "-3"]
    dry = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run" in dry.stdout
    assert [p.current for p in OffsetResetter(settings).plan(group, topic, Target(shift_by=0))] == [6, 6]
    done = subprocess.run(argv + ["--execute"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p.current for p in OffsetResetter(settings).plan(group, topic, Target(shift_by=0))] == [3, 3]


def test_refuses_while_the_group_has_live_members(loaded_topic: tuple[KafkaSettings, str, dt.datetime]) -> None:
    settings, topic, _ = loaded_topic
    group = topic + "-live"
    consumer = Consumer(consumer_config(settings, group, **{"session.timeout.ms": 6000}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.consume(10, 0.5)
        assert consumer.assignment(), "consumer never joined the group"
        with pytest.raises(ReplayError, match="has active members"):
            OffsetResetter(settings).ensure_group_stopped(group)
        env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
        cli = subprocess.run([sys.executable, "-m", "evpipe", "replay", "offsets", "--group", group, "--topic", topic,
                              "--to-earliest", "--execute"], capture_output=True, text=True, env=env, timeout=60)
        assert cli.returncode == 1 and "has active members" in cli.stdout
    finally:
        consumer.close()


def test_unknown_topic_and_partition_are_clear_errors(loaded_topic: tuple[KafkaSettings, str, dt.datetime]) -> None:
    settings, topic, _ = loaded_topic
    resetter = OffsetResetter(settings)
    with pytest.raises(ReplayError, match="has no partition"):
        resetter.plan(topic + "-g", topic, Target(to_earliest=True), partitions=[7])
