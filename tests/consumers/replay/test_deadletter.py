"""`evpipe dlq show|redrive` over a real dead-letter topic."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from consumers.replay.deadletter import dead_letters, redrive
from consumers.replay.reader import read_topic
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.parse import Poison
from evpipe.kafka import create_topics, producer_config
from evpipe.settings import KafkaSettings
from schemas.envelope import Enrichment, EventValidator
from tests.providers import Service


@pytest.fixture
def dlq_setup(kafka: Service, topic: str) -> tuple[KafkaSettings, str, str, list[bytes]]:
    settings = KafkaSettings(kafka_bootstrap_servers=kafka.url)
    dlq, main = topic + ".dlq", topic + ".main"
    create_topics(settings, [dlq, main], partitions=2)
    enrich = Enrichment("src", "2026-11-21T10:00:00.000Z")
    events = [EventValidator().encode({"type": "fixed", "user_id": f"u{i}"}, enrich)[1] for i in range(3)]
    poison = [Poison(10 + i, value, "ClickHouse rejected row: bad value") for i, value in enumerate(events)]
    poison.append(Poison(20, b"{not json", "not a valid event: JSON parse error"))
    letters = DeadLetters(producer_config(settings), dlq)
    letters.send("events", 3, poison)
    letters.close()
    return settings, dlq, main, events


def test_show_lists_reasons_and_origin(dlq_setup: tuple[KafkaSettings, str, str, list[bytes]]) -> None:
    settings, dlq, _, _ = dlq_setup
    letters = [letter for letter, _ in dead_letters(settings, dlq)]
    assert len(letters) == 4
    assert sorted(letter.origin for letter in letters) == ["events/3@10", "events/3@11", "events/3@12", "events/3@20"]
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    out = subprocess.run([sys.executable, "-m", "evpipe", "dlq", "show", "--topic", dlq, "--filter", "json parse"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1 matching of 4 dead letters" in out.stdout
    assert "not a valid event: JSON parse error" in out.stdout


def test_redrive_reproduces_matching_letters(dlq_setup: tuple[KafkaSettings, str, str, list[bytes]]) -> None:
    settings, dlq, main, events = dlq_setup
    dry = redrive(settings, dead_letters(settings, dlq, needle="ClickHouse rejected"), main, dry_run=True)
    assert (dry.read, dry.matched, dry.redriven) == (4, 3, 0)
    assert list(read_topic(settings, main, idle_timeout=1.0)) == []
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    out = subprocess.run([sys.executable, "-m", "evpipe", "dlq", "redrive", "--topic", dlq, "--to-topic", main,
                          "--filter", "ClickHouse rejected"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "read 4, matched 3, redriven 3" in out.stdout
    redriven = list(read_topic(settings, main, idle_timeout=1.0))
    assert sorted(m.value() for m in redriven) == sorted(events)
    # Keys follow the wire format, so a user's events stay on one partition.
    assert sorted(m.key() for m in redriven) == sorted(
        f"src:{orjson.loads(v)['user_id']}".encode() for v in events)


def test_missing_topic_is_a_clear_error(kafka: Service) -> None:
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": kafka.url}
    out = subprocess.run([sys.executable, "-m", "evpipe", "dlq", "show", "--topic", "no-such-topic-xyz"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1 and "does not exist" in out.stdout
