"""`evpipe loader` end to end: Kafka (Tansu or a real broker) -> ClickHouse, exactly once."""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from consumers.loader.app import Loader
from consumers.loader.settings import LoaderSettings
from evpipe.settings import load
from schemas.envelope import format_timestamp
from tests.loader.events import BASE, event, messages
from tests.loader.harness import LoaderProcess, Target, loader_env, read_dead_letters
from tests.providers import Service, unique_name
from tests.runtime.events import create_topic, produce

pytestmark = pytest.mark.slow


def _events(n: int, start: int = 0) -> list[dict]:  # type: ignore[type-arg]
    return [event(i, received=BASE + dt.timedelta(milliseconds=i)) for i in range(start, start + n)]


def _retried(events: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    """The same events as a client retry: same event_id, a later received_at, new offsets."""
    later = dt.timedelta(seconds=30)
    return [dict(e, received_at=format_timestamp(dt.datetime.fromisoformat(e["received_at"]) + later))
            for e in events]


def test_n_events_load_once_with_client_retries_and_a_rejected_row(
    kafka: Service, clickhouse: Service, topic: str, tmp_path: Path
) -> None:
    create_topic(kafka.url, topic, 3)
    create_topic(kafka.url, f"{topic}.dlq", 1)
    events = _events(3000)
    bad = event(99_999, event_id="not-a-uuid")
    produce(kafka.url, topic, messages(events + [bad] + _retried(events[:200])))
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    loader = LoaderProcess(loader_env(kafka, topic, unique_name("g"), target), tmp_path / "loader.log").start()
    try:
        assert target.wait_for(3000, 120, [loader]) == (3000, 3000), loader.tail()
        time.sleep(2)  # nothing more arrives late
        assert target.counts() == (3000, 3000)
        rollup = target.query("SELECT sum(events) AS n FROM events_per_minute")[0]["n"]
        assert int(rollup) == 3000
        if target.path is not None:
            endpoint = (target.path.parent / "clickhouse.query-endpoint").read_text().strip()
            with urllib.request.urlopen(f"{endpoint}/metrics") as response:
                metrics = response.read().decode()
            assert 'evpipe_loader_rows_total{outcome="duplicate"} 200.0' in metrics
            assert 'evpipe_loader_rows_total{outcome="rejected"} 1.0' in metrics
    finally:
        code = loader.terminate()
    assert code == 0, loader.tail()
    dead = read_dead_letters(kafka.url, f"{topic}.dlq", 1)
    assert len(dead) == 1 and b"not-a-uuid" in dead[0][0] and "UUID" in dead[0][1]["error"]
    # Its origin headers point at the rejected event's own message.
    headers = dead[0][1]
    assert headers["topic"] == topic
    assert b"not-a-uuid" in _message_at(kafka.url, topic, int(headers["partition"]), int(headers["offset"]))


def _message_at(bootstrap: str, topic: str, partition: int, offset: int) -> bytes:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("g"), "enable.auto.commit": False,
                         "fetch.queue.backoff.ms": 10})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                assert message.offset() == offset
                return message.value() or b""
        raise AssertionError(f"no message at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()


@pytest.mark.fault
def test_kill_9_at_random_points(kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    """kill -9 ten times while events keep arriving; every kill lands mid-load (checked halfway)."""
    total = 500_000 if os.environ.get("EVPIPE_FULL") else 50_000
    create_topic(kafka.url, topic, 6)
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    loader = LoaderProcess(
        loader_env(kafka, topic, unique_name("g"), target, CONSUMER_BATCH_MAX_MESSAGES="2000",
                   CONSUMER_BATCH_MAX_AGE_S="0.3"),
        tmp_path / "loader.log",
    )
    producer = threading.Thread(target=_paced_produce, args=(kafka.url, topic, _events(total), 20, 4.0))
    producer.start()
    rng = random.Random(os.environ.get("EVPIPE_SEED", "6"))
    kills, halfway = 0, (0, 0)
    try:
        while kills < 10:
            loader.start()
            # Start-up and the group join (the killed member's session must expire first), then batches.
            time.sleep(rng.uniform(8.0, 14.0))
            loader.kill()
            kills += 1
            if kills == 5:
                halfway = target.counts()
        producer.join()
        loader.start()
        got = target.wait_for(total, 600, [loader])
    finally:
        producer.join()
        if loader.proc is not None and loader.proc.poll() is None:
            loader.terminate()
    assert 0 < halfway[0] < total, f"the kills did not land mid-load: {halfway} of {total} loaded at kill 5"
    assert halfway[0] == halfway[1]
    assert got == (total, total), f"after {kills} kills: {got}\n{loader.tail()}"
    time.sleep(2)
    assert target.counts() == (total, total)


def _paced_produce(bootstrap: str, topic: str, events: list[dict], chunks: int, pause: float) -> None:  # type: ignore[type-arg]
    size = -(-len(events) // chunks)
    for i in range(0, len(events), size):
        produce(bootstrap, topic, messages(events[i:i + size]))
        time.sleep(pause)


@pytest.mark.fault
def test_two_loaders_in_one_group_with_rebalances(
    kafka: Service, clickhouse: Service, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members in one process sharing the fixture's engine (an embedded engine opens in one process only)."""
    total = 30_000
    create_topic(kafka.url, topic, 6)
    target = Target(clickhouse.url, unique_name("db"))
    env = loader_env(kafka, topic, unique_name("g"), target, CONSUMER_BATCH_MAX_MESSAGES="2000",
                     CONSUMER_BATCH_MAX_AGE_S="0.3")
    for name in LoaderSettings.model_fields:
        if name.upper() in env:
            monkeypatch.setenv(name.upper(), env[name.upper()])
    settings = load(LoaderSettings)
    first, second = Loader(settings), Loader(settings)
    runner = threading.Thread(target=first.run)
    runner.start()
    producer = threading.Thread(target=produce, args=(kafka.url, topic, messages(_events(total))))
    producer.start()
    members: list[Loader] = []
    try:
        for _ in range(3):  # a second member joins and leaves: six rebalances
            member = Loader(settings) if members else second
            thread = threading.Thread(target=member.run)
            thread.start()
            members.append(member)
            time.sleep(8)
            member.stop()
            thread.join(60)
        producer.join()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and _count(first) < total:
            time.sleep(1)
    finally:
        producer.join()
        first.stop()
        runner.join(60)
    assert _counts(first) == (total, total)
    # Both took part: the first member and the joining ones each wrote and committed batches.
    assert first.loop.stats.committed_batches > 0
    assert sum(m.loop.stats.committed_batches for m in members) > 0


def _count(loader: Loader) -> int:
    return _counts(loader)[0]


def _counts(loader: Loader) -> tuple[int, int]:
    with loader.sink.lock:
        row = loader.client.query(
            f"SELECT count(), uniqExact(event_id) FROM {loader.sink.tables.events}").result_rows[0]
    return int(row[0]), int(row[1])


@pytest.mark.fault
def test_clickhouse_unavailable_for_30_seconds(
    kafka: Service, clickhouse: Service, topic: str, tmp_path: Path
) -> None:
    create_topic(kafka.url, topic, 3)
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    outage = tmp_path / "clickhouse-down"
    loader = LoaderProcess(loader_env(kafka, topic, unique_name("g"), target, LOADER_FAIL_FILE=str(outage)),
                           tmp_path / "loader.log").start()
    try:
        produce(kafka.url, topic, messages(_events(2000)))
        assert target.wait_for(2000, 120, [loader]) == (2000, 2000), loader.tail()
        outage.touch()
        produce(kafka.url, topic, messages(_events(3000, start=2000)))
        time.sleep(30)
        assert target.counts() == (2000, 2000)  # nothing got in during the outage...
        assert "injected outage" in loader.tail(20_000)
        outage.unlink()
        assert target.wait_for(5000, 120, [loader]) == (5000, 5000), loader.tail()  # ...and nothing was lost
    finally:
        outage.unlink(missing_ok=True)
        code = loader.terminate()
    assert code == 0, loader.tail()


def test_real_clickhouse_server(kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    if clickhouse.provider == "local:chdb":
        pytest.skip("no ClickHouse server: set CLICKHOUSE_URL (or run with Docker) to test one; "
                    "the embedded engine ran every other test")
    create_topic(kafka.url, topic, 3)
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    produce(kafka.url, topic, messages(_events(5000)))
    loader = LoaderProcess(loader_env(kafka, topic, unique_name("g"), target), tmp_path / "loader.log").start()
    try:
        assert target.wait_for(5000, 120, [loader]) == (5000, 5000), loader.tail()
    finally:
        code = loader.terminate()
    assert code == 0, loader.tail()
