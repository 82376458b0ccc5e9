"""`evpipe replay archive` on archives the archiver's own sink wrote (fast, in-process parts)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore
from consumers.replay.archive import (
    ClickHouseWriter,
    KafkaWriter,
    ReplayError,
    Window,
    backfill,
    list_files,
)
from consumers.replay.reader import read_topic
from evpipe.clickhouse import connect
from evpipe.kafka import create_topics, producer_config
from evpipe.settings import KafkaSettings
from schemas.envelope import kafka_key
from schemas.rows import wire_events
from tests.consumers.loader.events import BASE, batch, event, table
from tests.providers import Service

ROOT = Path(__file__).resolve().parents[3]
HOUR = dt.timedelta(hours=1)


def _events(n: int, hours: int = 3) -> list[dict[str, Any]]:
    """n events spread evenly over ``hours`` hours from BASE."""
    step = hours * HOUR / n
    return [event(i, received=BASE + i * step) for i in range(n)]


def _archive(root: Path, topic: str, events: list[dict[str, Any]], per_batch: int = 100) -> LocalStore:
    """Write events the way the archiver does: batches of offsets, one file per batch and hour."""
    store = LocalStore(root)
    sink = ParquetSink(store, row_group_rows=1000)
    for first in range(0, len(events), per_batch):
        sink.write(batch(events[first:first + per_batch], topic=topic, partition=first // per_batch % 2, first=first))
    return store


def _in(events: list[dict[str, Any]], window: Window) -> list[dict[str, Any]]:
    return [e for e in events if window.start <= dt.datetime.fromisoformat(e["received_at"]) < window.end]


def test_lists_only_overlapping_hours_and_filters_on_received_at(tmp_path: Path) -> None:
    events = _events(600)
    store = _archive(tmp_path, "ev", events)
    _archive(tmp_path, "other", _events(50))  # another topic in the same archive is never read
    window = Window(BASE + HOUR / 2, BASE + HOUR + HOUR / 2)
    files = list_files(store, "ev", window)
    hours = {f.key.split("/")[2] for f in files}
    assert hours == {f"hour={BASE:%H}", f"hour={BASE + HOUR:%H}"}
    assert all(f.key.startswith("topic=ev/") for f in files)
    summary = backfill(store, "ev", window, writer=None, batch_rows=64)
    expected = len(_in(events, window))
    assert 0 < expected < summary.read < len(events)
    assert (summary.files, summary.in_window, summary.written) == (len(files), expected, 0)


def test_rows_reencode_to_the_exact_wire_messages() -> None:
    events = _events(50) + [dict(event(99), anonymous_id="a-1", user_id=None)]
    assert [orjson.dumps(e) for e in wire_events(table(events))] == [orjson.dumps(e) for e in events]


def test_into_clickhouse_restores_once_and_twice_adds_nothing(
    tmp_path: Path, clickhouse: Service, ch_database: str
) -> None:
    events = _events(900)
    store = _archive(tmp_path, "ev", events, per_batch=250)
    window = Window(BASE, BASE + 3 * HOUR)
    client = connect(clickhouse.url)
    first = backfill(store, "ev", window, ClickHouseWriter(client, ch_database, 30), batch_rows=200)
    assert (first.in_window, first.written, first.duplicates, first.failed) == (900, 900, 0, 0)
    again = backfill(store, "ev", window, ClickHouseWriter(client, ch_database, 30), batch_rows=300)
    assert (again.written, again.duplicates, again.failed) == (0, 900, 0)
    ids = {row[0] for row in client.query(f"SELECT toString(event_id) FROM `{ch_database}`.events").result_rows}
    assert ids == {e["event_id"] for e in events}
    assert client.query(f"SELECT count() FROM `{ch_database}`.events").result_rows[0][0] == 900

    # Lost the events table: the ids index still lists everything, so the backfill refuses until it is cleared.
    client.command(f"DROP TABLE `{ch_database}`.events")
    with pytest.raises(ReplayError, match="TRUNCATE TABLE"):
        ClickHouseWriter(client, ch_database, 30)
    client.command(f"TRUNCATE TABLE `{ch_database}`.event_ids")
    restored = backfill(store, "ev", window, ClickHouseWriter(client, ch_database, 30))
    assert (restored.written, restored.duplicates) == (900, 0)
    after = client.query(f"SELECT count(), uniqExact(event_id) FROM `{ch_database}`.events").result_rows[0]
    assert after == (900, 900)


def test_into_kafka_produces_the_window_keyed_like_the_gateway(tmp_path: Path, kafka: Service, topic: str) -> None:
    settings = KafkaSettings(kafka_bootstrap_servers=kafka.url)
    create_topics(settings, [topic], partitions=3)
    events = _events(300)
    store = _archive(tmp_path, "ev", events)
    window = Window(BASE + HOUR, BASE + 2 * HOUR)
    summary = backfill(store, "ev", window, KafkaWriter(producer_config(settings), topic), batch_rows=50)
    expected = _in(events, window)
    assert (summary.written, summary.failed) == (len(expected), 0)
    produced = list(read_topic(settings, topic, idle_timeout=1.0))
    assert sorted(m.value() for m in produced) == sorted(orjson.dumps(e) for e in expected)
    assert all(m.key() == kafka_key(orjson.loads(m.value())) for m in produced)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evpipe", "replay", "archive", *args], cwd=ROOT,
                          env=os.environ | env, capture_output=True, text=True, timeout=120, check=False)


def test_cli_dry_run_counts_and_bad_windows_fail_clearly(tmp_path: Path) -> None:
    events = _events(200)
    _archive(tmp_path / "archive", "ev", events)
    start, end = BASE.isoformat(), (BASE + HOUR).isoformat()
    dry = _cli("--from", start, "--to", end, "--into", "clickhouse", "--source-topic", "ev", "--dry-run",
               ARCHIVE_URI=str(tmp_path / "archive"))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"in window {len(_in(events, Window(BASE, BASE + HOUR)))} (nothing written)" in dry.stdout
    backwards = _cli("--from", end, "--to", start, "--into", "kafka", ARCHIVE_URI=str(tmp_path / "archive"))
    assert backwards.returncode == 1 and "must be after --from" in backwards.stdout


@pytest.mark.s3
def test_cli_backfills_from_s3_into_the_replay_topic(kafka: Service, s3: Service, s3_bucket: str, topic: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers.archiver.store import S3Store

    credentials = {"AWS_ACCESS_KEY_ID": s3.extra["access_key"], "AWS_SECRET_ACCESS_KEY": s3.extra["secret_key"],
                   "AWS_DEFAULT_REGION": s3.extra["region"]}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    events = _events(400)
    sink = ParquetSink(S3Store(s3_bucket, "arch", s3.url, 64 * 1024 * 1024))
    for first in range(0, len(events), 100):
        sink.write(batch(events[first:first + 100], topic="ev", first=first))
    settings = KafkaSettings(kafka_bootstrap_servers=kafka.url)
    create_topics(settings, [topic], partitions=2)
    window = Window(BASE + HOUR / 2, BASE + 2 * HOUR)
    out = _cli("--from", window.start.isoformat(), "--to", window.end.isoformat(), "--into", "kafka",
               "--topic", topic, "--source-topic", "ev", "--max-rate", "100000", ARCHIVE_URI=f"s3://{s3_bucket}/arch",
               S3_ENDPOINT_URL=s3.url, KAFKA_BOOTSTRAP_SERVERS=kafka.url, **credentials)
    expected = _in(events, window)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"in window {len(expected)}, written {len(expected)}," in out.stdout
    produced = list(read_topic(settings, topic, idle_timeout=1.0))
    assert sorted(m.value() for m in produced) == sorted(orjson.dumps(e) for e in expected)


def test_unreadable_file_and_missing_topic_fail_with_the_reason(tmp_path: Path, kafka: Service) -> None:
    events = _events(300)
    store = _archive(tmp_path / "archive", "ev", events)
    window = ["--from", BASE.isoformat(), "--to", (BASE + 3 * HOUR).isoformat(), "--source-topic", "ev"]
    env = {"ARCHIVE_URI": str(store.root), "KAFKA_BOOTSTRAP_SERVERS": kafka.url}
    missing = _cli(*window, "--into", "kafka", "--topic", "no-such-replay-topic-xyz", **env)
    assert missing.returncode == 1 and "'no-such-replay-topic-xyz' does not exist" in missing.stdout
    broken = store.root / f"topic=ev/dt={BASE + HOUR:%Y-%m-%d}/hour={BASE + HOUR:%H}/ev-0009-broken.parquet"
    broken.write_bytes(b"not parquet at all")
    out = _cli(*window, "--into", "clickhouse", "--dry-run", **env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "aborted: topic=ev/" in out.stdout and "ev-0009-broken.parquet" in out.stdout
    assert "run the same command again" in out.stdout


def test_clickhouse_backfill_says_where_clickhouse_is_missing(tmp_path: Path) -> None:
    from evpipe.local.daemon import free_port

    _archive(tmp_path / "archive", "ev", _events(10))
    out = _cli("--from", BASE.isoformat(), "--to", (BASE + 3 * HOUR).isoformat(), "--into", "clickhouse",
               "--source-topic", "ev", ARCHIVE_URI=str(tmp_path / "archive"),
               CLICKHOUSE_URL=f"http://127.0.0.1:{free_port()}", REPLAY_CONNECT_WAIT_S="1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "evpipe clickhouse serve" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_window_bounds_are_exact_to_the_millisecond(tmp_path: Path) -> None:
    at = BASE + dt.timedelta(minutes=5, milliseconds=7)
    events = [event(i, received=at + dt.timedelta(milliseconds=i)) for i in range(3)]  # .007, .008, .009
    store = _archive(tmp_path, "ev", events)
    cases = {(0, 3): 3, (1, 2): 1, (0.5, 2.5): 2, (2.001, 9): 0}  # window in ms after `at` -> events inside
    for (lo, hi), expected in cases.items():
        window = Window(at + dt.timedelta(milliseconds=lo), at + dt.timedelta(milliseconds=hi))
        assert backfill(store, "ev", window, writer=None).in_window == expected, (lo, hi)


def test_rows_clickhouse_rejects_are_counted_failed_and_the_rest_goes_in(
    tmp_path: Path, clickhouse: Service, ch_database: str
) -> None:
    events = _events(50) + [event(999, received=BASE + HOUR, event_id="not-a-uuid")]
    store = _archive(tmp_path, "ev", events)
    client = connect(clickhouse.url)
    summary = backfill(store, "ev", Window(BASE, BASE + 3 * HOUR), ClickHouseWriter(client, ch_database, 30))
    assert (summary.written, summary.failed, summary.ok) == (50, 1, False)
    assert any("ClickHouse rejected rows" in e for e in summary.errors)
    assert client.query(f"SELECT count() FROM `{ch_database}`.events").result_rows[0][0] == 50


def test_max_rate_paces_writes_in_quarter_second_slices(tmp_path: Path) -> None:
    from consumers.replay.archive import PacedWriter, Pacer, Summary

    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    written: list[tuple[int, str]] = []

    class Recorder:
        def write(self, rows: Any, identity: str, summary: Summary) -> None:
            written.append((rows.num_rows, identity))

        def finish(self, summary: Summary) -> None:
            pass

    paced = PacedWriter(Recorder(), Pacer(1000, clock=lambda: now[0], sleep=sleep))
    paced.write(table(_events(900)), "f#0", Summary())
    assert written == [(250, "f#0+0"), (250, "f#0+250"), (250, "f#0+500"), (150, "f#0+750")]
    assert sleeps == [0.25, 0.25, 0.25]  # 900 events at 1000/s: the last slice starts at 0.75 s
