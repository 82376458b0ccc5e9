"""`evpipe tail TOPIC` against the test broker (Tansu locally, real Kafka when the fixture picks it)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from evpipe.tail.fromtime import BadTime, parse_from_time
from tests.providers import Service

NOW_MS = int(time.time() * 1000)


def _tail(kafka: Service, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evpipe", "tail", *args], capture_output=True, text=True,
                          env=os.environ | {"KAFKA_BOOTSTRAP_SERVERS": kafka.url}, timeout=timeout)


def _lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _produce(kafka: Service, topic: str, messages: list[dict[str, Any]], partitions: int = 3) -> None:
    from confluent_kafka import Producer

    from evpipe.kafka import create_topics, producer_config
    from evpipe.settings import KafkaSettings

    settings = KafkaSettings(kafka_bootstrap_servers=kafka.url)
    create_topics(settings, [topic], partitions=partitions)
    producer = Producer(producer_config(settings))
    for message in messages:
        producer.produce(topic, **message)
    assert producer.flush(15) == 0


def _events(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"key": f"web:u{i}".encode(), "value": json.dumps({"type": f"t{i % 2}", "n": i}).encode(),
             "partition": i % 3, **extra} for i in range(n)]


def test_the_first_five_messages_from_the_beginning(kafka: Service, topic: str) -> None:
    _produce(kafka, topic, _events(12))
    lines = _lines(_tail(kafka, topic, "-n", "5", "--from-beginning"))
    assert len(lines) == 5
    for line in lines:
        assert list(line) == ["topic", "partition", "offset", "timestamp", "key", "headers", "value"]
        assert line["topic"] == topic and line["key"].startswith("web:u") and line["headers"] == {}
        assert json.loads(line["value"])["type"] in ("t0", "t1")
        assert dt.datetime.fromisoformat(line["timestamp"]).year >= 2024


def test_without_follow_it_stops_at_the_end(kafka: Service, topic: str) -> None:
    _produce(kafka, topic, _events(12))
    started = time.monotonic()
    lines = _lines(_tail(kafka, topic, "--from-beginning"))
    assert time.monotonic() - started < 30
    assert sorted(json.loads(line["value"])["n"] for line in lines) == list(range(12))
    for partition in range(3):  # each partition whole, in offset order
        offsets = [line["offset"] for line in lines if line["partition"] == partition]
        assert offsets == list(range(4))


def test_an_empty_topic_prints_nothing_and_ends(kafka: Service, topic: str) -> None:
    _produce(kafka, topic, [])
    result = _tail(kafka, topic, "--from-beginning")
    assert result.returncode == 0 and result.stdout == "", result.stderr


def test_bytes_that_are_not_text_and_repeated_headers(kafka: Service, topic: str) -> None:
    _produce(kafka, topic, [{"key": None, "value": b"\xff\x00", "headers": [("error", b"bad"), ("error", b"\xfe"),
                                                                          ("empty", None)]}], partitions=1)
    [line] = _lines(_tail(kafka, topic, "--from-beginning"))
    assert line["key"] is None
    assert line["value"] == {"base64": "/wA="}
    assert line["headers"] == {"error": ["bad", {"base64": "/g=="}], "empty": None}


def test_partition_and_grep_choose_messages(kafka: Service, topic: str) -> None:
    _produce(kafka, topic, _events(12))
    lines = _lines(_tail(kafka, topic, "--from-beginning", "-p", "1", "--grep", '"type": "t1"'))
    assert [json.loads(line["value"])["n"] for line in lines] == [1, 7]  # partition 1 holds 1, 4, 7, 10
    assert _lines(_tail(kafka, topic, "--from-beginning", "--grep", "no such text")) == []


def test_from_time_starts_at_the_first_message_at_or_after_it(kafka: Service, topic: str) -> None:
    hour_ago = NOW_MS - 3_600_000
    _produce(kafka, topic, _events(3, timestamp=hour_ago) + [
        {"value": f"recent {i}".encode(), "partition": i % 3, "timestamp": NOW_MS} for i in range(3)])
    since = dt.datetime.fromtimestamp((NOW_MS - 60_000) / 1000, dt.UTC).isoformat()
    assert sorted(line["value"] for line in _lines(_tail(kafka, topic, "--from-time", since))) == [
        "recent 0", "recent 1", "recent 2"]
    assert len(_lines(_tail(kafka, topic, "--from-time", "2h"))) == 6


def test_from_the_end_it_follows_new_messages_only(kafka: Service, topic: str) -> None:
    from confluent_kafka import Producer

    _produce(kafka, topic, _events(6))
    follower = subprocess.Popen([sys.executable, "-m", "evpipe", "tail", topic, "-n", "3"], stdout=subprocess.PIPE,
                                text=True, env=os.environ | {"KAFKA_BOOTSTRAP_SERVERS": kafka.url})
    producer = Producer({"bootstrap.servers": kafka.url})
    try:
        # It prints what arrives after it started; keep producing until it has its three.
        for i in range(100):
            producer.produce(topic, value=f"new {i}".encode(), partition=i % 3)
            producer.flush(5)
            if follower.poll() is not None:
                break
            time.sleep(0.3)
        out, _ = follower.communicate(timeout=30)
    finally:
        follower.kill()
    values = [json.loads(line)["value"] for line in out.splitlines()]
    assert follower.returncode == 0 and len(values) == 3
    assert all(v.startswith("new ") for v in values), values


@pytest.mark.parametrize(("args", "code", "said"), [
    (["--from-time", "yesterday"], 2, "argument --from-time: 'yesterday' is not a time"),
    (["--grep", "("], 2, "argument --grep: '(' is not a regular expression"),
    (["-n", "0"], 2, "argument -n/--max-messages: '0': expected a whole number of at least 1"),
    (["--from-beginning", "--from-time", "1h"], 2, "not allowed with argument"),
    (["-p", "9"], 1, "has partitions 0-0; no partition 9"),
])
def test_bad_input_is_a_message_not_a_traceback(kafka: Service, topic: str, args: list[str], code: int,
                                                said: str) -> None:
    _produce(kafka, topic, [], partitions=1)
    result = _tail(kafka, topic, *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_topic_names_the_topics_there_are(kafka: Service, topic: str) -> None:
    _produce(kafka, topic, [], partitions=1)
    result = _tail(kafka, "no_such_topic_" + topic, "--from-beginning")
    assert result.returncode == 1
    assert f"unknown topic 'no_such_topic_{topic}'; the topics are: " in result.stderr
    assert topic in result.stderr and "Traceback" not in result.stderr


def test_from_time_forms() -> None:
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    noon = int(now.timestamp() * 1000)
    assert parse_from_time("2026-12-04T12:00:00Z") == noon
    assert parse_from_time("2026-12-04T12:00") == noon  # no zone: UTC
    assert parse_from_time("2026-12-04T13:00:00+01:00") == noon
    assert parse_from_time(str(noon)) == noon
    assert parse_from_time("15m", now=now) == noon - 15 * 60_000
    assert parse_from_time("1.5h", now=now) == noon - 90 * 60_000
    with pytest.raises(BadTime, match="expected an ISO 8601 time"):
        parse_from_time("last tuesday")
