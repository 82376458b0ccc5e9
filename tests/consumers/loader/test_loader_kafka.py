"""`evpipe loader` end to end: Kafka (Tansu or a real broker) -> ClickHouse, exactly once."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.loader.app import Loader
from consumers.loader.settings import LoaderSettings
from evpipe.local.clickhouse import LocalClickHouse
from evpipe.local.daemon import free_port
from evpipe.settings import load
from schemas.envelope import format_timestamp
from tests.consumers.loader.events import BASE, event, messages
from tests.consumers.loader.harness import LoaderProcess, Target, loader_env, read_dead_letters
from tests.consumers.runtime.events import create_topic, produce
from tests.providers import Service, unique_name

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
    port = free_port()
    loader = LoaderProcess(loader_env(kafka, topic, unique_name("g"), target, METRICS_PORT=str(port)),
                           tmp_path / "loader.log").start()
    try:
        assert target.wait_for(3000, 120, [loader]) == (3000, 3000), loader.tail()
        time.sleep(2)  # nothing more arrives late
        assert target.counts() == (3000, 3000)
        rollup = target.query("SELECT sum(events) AS n FROM events_per_minute")[0]["n"]
        assert int(rollup) == 3000
        assert loader.proc is not None
        mapped = Path(f"/proc/{loader.proc.pid}/maps").read_text()
        assert "chdb" not in mapped, "the loader process has the ClickHouse engine loaded"  # it is a client
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
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
    """Members in one process, each with its own ClickHouse client, joining and leaving."""
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


@pytest.fixture
def private_clickhouse(tmp_path: Path) -> Iterator[LocalClickHouse]:
    """A ClickHouse server of this test alone, so outages hit nobody else."""
    server = LocalClickHouse(tmp_path / "ch-state", free_port())
    server.ensure()
    yield server
    os.kill(server.daemon.pid() or 0, signal.SIGCONT) if server.daemon.pid() else None
    server.stop()


@pytest.mark.fault
@pytest.mark.parametrize("outage", ["sigstop", "kill -9"])
def test_clickhouse_outage_of_30_seconds(
    outage: str, kafka: Service, private_clickhouse: LocalClickHouse, topic: str, tmp_path: Path
) -> None:
    """A real outage of the server process: frozen (SIGSTOP: connections hang) or killed and restarted."""
    create_topic(kafka.url, topic, 3)
    target = Target(private_clickhouse.url, unique_name("db"))
    loader = LoaderProcess(loader_env(kafka, topic, unique_name("g"), target, CLICKHOUSE_TIMEOUT_S="5"),
                           tmp_path / "loader.log").start()
    try:
        produce(kafka.url, topic, messages(_events(2000)))
        assert target.wait_for(2000, 120, [loader]) == (2000, 2000), loader.tail()
        pid = private_clickhouse.daemon.pid()
        assert pid is not None
        if outage == "sigstop":
            os.kill(pid, signal.SIGSTOP)
        else:
            os.kill(pid, signal.SIGKILL)
        produce(kafka.url, topic, messages(_events(3000, start=2000)))
        time.sleep(30)
        if outage == "sigstop":
            os.kill(pid, signal.SIGCONT)
        else:
            assert private_clickhouse.ensure() == "started"
        assert target.wait_for(5000, 180, [loader]) == (5000, 5000), loader.tail()  # nothing lost or doubled
        time.sleep(3)
        assert target.counts() == (5000, 5000)
    finally:
        code = loader.terminate()
    assert code == 0, loader.tail()


def test_two_loader_processes_share_one_clickhouse(kafka: Service, clickhouse: Service, topic: str,
                                                   tmp_path: Path) -> None:
    """Loaders scale out: two processes in one group, one ClickHouse, every event once."""
    create_topic(kafka.url, topic, 6)
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    env = loader_env(kafka, topic, unique_name("g"), target)
    loaders = [LoaderProcess(env, tmp_path / f"loader-{i}.log").start() for i in range(2)]
    try:
        events = _events(6000)
        produce(kafka.url, topic, messages(events + _retried(events[:500])))
        assert target.wait_for(6000, 180, loaders) == (6000, 6000), loaders[0].tail() + loaders[1].tail()
        time.sleep(3)
        assert target.counts() == (6000, 6000)
        assert all(loader.alive() for loader in loaders)
    finally:
        codes = [loader.terminate() for loader in loaders]
    assert codes == [0, 0], loaders[0].tail() + loaders[1].tail()
