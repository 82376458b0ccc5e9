"""Recovery drills end to end: archiver and loader on a real broker, then replay, offsets reset, redrive.

The loader runs as a process, a client of the test ClickHouse server like the
test itself, in a database of this test's own.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore
from consumers.replay.reader import read_topic
from consumers.runtime import ConsumerLoop
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.parse import Poison
from evpipe.kafka import producer_config
from evpipe.settings import KafkaSettings
from schemas.envelope import kafka_key
from tests.consumers.archiver.helpers import archiver_env, read_archive, settings
from tests.consumers.loader.events import BASE, event, messages
from tests.consumers.loader.harness import LoaderProcess, Target, loader_env
from tests.consumers.runtime.events import create_topic, produce
from tests.consumers.runtime.loops import running, wait_for
from tests.providers import Service, unique_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
HOUR = dt.timedelta(hours=1)
PARTITIONS = 2


def _events(n: int) -> list[dict[str, Any]]:
    return [event(i, received=BASE + i * (3 * HOUR / n)) for i in range(n)]


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Messages the group has committed past on ``topic`` (offsets start at 0 and are contiguous here)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in found)


def _load(kafka: Service, target: Target, env: dict[str, str], log: Path, until: list[tuple[str, int]]) -> None:
    """Run the loader until its group committed ``until`` [(topic, messages)], then stop it cleanly."""
    loader = LoaderProcess(env, log).start()
    try:
        deadline = time.monotonic() + 120
        while not all(_committed(kafka.url, env["LOADER_GROUP_ID"], t, ) >= n for t, n in until):
            loader.check_alive()
            assert time.monotonic() < deadline, f"loader did not catch up:\n{loader.tail()}"
            time.sleep(1)
    finally:
        code = loader.terminate()
    assert code == 0, loader.tail()


def _evpipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "evpipe", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180, check=False)
    return out


def _ids(target: Target) -> list[str]:
    return sorted(str(r["event_id"]) for r in target.query("SELECT toString(event_id) AS event_id FROM events"))


def _archive(kafka: Service, topic: str, root: Path, expected: int) -> None:
    """Run the archiver in-process until the archive holds every event."""
    env = archiver_env(kafka.url, topic, f"{topic}.dlq", str(root), unique_name("ga"))
    loop = ConsumerLoop(settings(env), ParquetSink(LocalStore(root)), env["ARCHIVER_GROUP"], [topic])
    with running(loop):
        wait_for(lambda: loop.stats.rows == expected, timeout=120)
    assert read_archive(root).num_rows == expected


def test_lost_table_backfill_replay_topic_and_offset_reset(kafka: Service, clickhouse: Service, topic: str,
                                                           tmp_path: Path) -> None:
    replay_topic = f"{topic}.replay"
    for name in (topic, replay_topic, f"{topic}.dlq"):
        create_topic(kafka.url, name, PARTITIONS)
    events = _events(1200)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    produce(kafka.url, topic, messages(events))
    archive = tmp_path / "archive"
    _archive(kafka, topic, archive, len(events))

    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    group = unique_name("g")
    env = loader_env(kafka, topic, group, target)
    _load(kafka, target, env, tmp_path / "loader.log", [(topic, len(events))])
    loaded = _ids(target)
    assert loaded == sorted(e["event_id"] for e in events)

    # 1. Lost the events table: its id index goes with it, then the backfill restores the same rows.
    chsql = subprocess.run([sys.executable, "-m", "tests.consumers.replay.chsql", "DROP TABLE events", "TRUNCATE TABLE event_ids"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert chsql.returncode == 0, chsql.stderr
    assert target.counts() == (0, 0)
    replay_env = env | {"ARCHIVE_URI": str(archive)}
    window = ["--from", BASE.isoformat(), "--to", (BASE + 3 * HOUR).isoformat()]
    first = _evpipe(replay_env, "replay", "archive", *window, "--into", "clickhouse")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "written 1200, skipped as duplicates 0, failed 0" in first.stdout
    assert _ids(target) == loaded
    second = _evpipe(replay_env, "replay", "archive", *window, "--into", "clickhouse")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "written 0, skipped as duplicates 1200, failed 0" in second.stdout
    assert target.counts() == (1200, 1200)

    # 2. Backfill one hour through the replay topic: it holds exactly that hour, and loading it adds nothing.
    hour = ["--from", (BASE + HOUR).isoformat(), "--to", (BASE + 2 * HOUR).isoformat()]
    to_kafka = _evpipe(replay_env, "replay", "archive", *hour, "--into", "kafka", "--topic", replay_topic)
    assert to_kafka.returncode == 0, to_kafka.stdout + to_kafka.stderr
    in_hour = [e for e in events if BASE + HOUR <= dt.datetime.fromisoformat(e["received_at"]) < BASE + 2 * HOUR]
    assert f"written {len(in_hour)}," in to_kafka.stdout
    replayed = list(read_topic(KafkaSettings(kafka_bootstrap_servers=kafka.url), replay_topic, idle_timeout=1.0))
    assert sorted(m.value() for m in replayed) == sorted(orjson.dumps(e) for e in in_hour)
    assert all(m.key() == kafka_key(orjson.loads(m.value())) for m in replayed)
    with_replay = env | {"LOADER_CONSUME_REPLAY": "true", "KAFKA_REPLAY_TOPIC": replay_topic}
    _load(kafka, target, with_replay, tmp_path / "loader2.log", [(topic, len(events)), (replay_topic, len(in_hour))])
    assert target.counts() == (1200, 1200)

    # 3. Rewind the loader group to before the events were produced: re-reading them duplicates nothing.
    reset = ["replay", "offsets", "--group", group, "--topic", topic, "--to-datetime", before.isoformat(), "--execute"]
    deadline = time.monotonic() + 60
    while "has active members" in (out := _evpipe(env, *reset)).stdout and time.monotonic() < deadline:
        time.sleep(2)  # the stopped loader's membership can take a session timeout to expire
    assert out.returncode == 0, out.stdout + out.stderr
    assert _committed(kafka.url, group, topic) == 0
    _load(kafka, target, env, tmp_path / "loader3.log", [(topic, len(events))])
    assert target.counts() == (1200, 1200)


def test_redriven_dead_letter_lands_once(kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    dlq = f"{topic}.dlq"
    for name in (topic, dlq):
        create_topic(kafka.url, name, PARTITIONS)
    settings_ = KafkaSettings(kafka_bootstrap_servers=kafka.url)
    fixed = event(7, type_="fixed")
    letters = DeadLetters(producer_config(settings_), dlq)
    letters.send(topic, 0, [Poison(41, orjson.dumps(fixed), "ClickHouse rejected row: bad value")])
    letters.close()
    env = loader_env(kafka, topic, unique_name("g"), Target.choose(clickhouse, unique_name("db"), tmp_path))
    for _ in range(2):  # an operator redrives twice by mistake
        out = _evpipe(env, "dlq", "redrive", "--topic", dlq, "--filter", "ClickHouse rejected")
        assert out.returncode == 0 and "redriven 1" in out.stdout, out.stdout + out.stderr
    target = Target.choose(clickhouse, env["CLICKHOUSE_DATABASE"], tmp_path)
    _load(kafka, target, env, tmp_path / "loader.log", [(topic, 2)])
    assert target.counts() == (1, 1)
    assert _ids(target) == [fixed["event_id"]]
