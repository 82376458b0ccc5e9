"""The worker against real Redis and Postgres: exactly once, poison items, metrics, SIGTERM."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import orjson
import psycopg
import pytest
import redis

from consumers.runtime.metrics import serve
from consumers.worker.metrics import WorkerMetrics
from consumers.worker.parse import RowParser
from consumers.worker.writer import is_item_error
from evpipe import pgstore
from tests.consumers.worker import harness
from tests.consumers.worker.events import make_event
from tests.providers import Service


@pytest.fixture
def rclient(redis_server: Service) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_exactly_once(postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str,
                      rclient: redis.Redis) -> None:
    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    items = harness.make_wire(12_000)
    harness.push(rclient, queue, items + items[:500])  # re-delivered copies must be ignored
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_batch_size=2000)
    with harness.ThreadWorker(s) as worker:
        harness.wait_until(lambda: harness.in_flight(rclient, queue) == 0, 60, "the queue to drain")
        harness.push(rclient, queue, items[100:200])  # late duplicates, after their originals were stored
        harness.wait_until(lambda: harness.in_flight(rclient, queue) == 0, 30, "the duplicates to drain")
    assert harness.counts(postgres.url, table) == (12_000, 12_000)
    assert worker.metrics.inserted._value.get() == 12_000
    assert worker.metrics.duplicates._value.get() == 600
    assert rclient.llen(queue + ":dead") == 0
    assert not rclient.sismember(queue + ":workers", worker.worker_id)  # deregistered on stop


def test_poison_items_are_dead_lettered_and_the_rest_inserted(
    postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, rclient: redis.Redis
) -> None:
    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    good = harness.make_wire(3000)
    bad_time = orjson.dumps(dict(make_event(90_001), received_at="not a timestamp"))
    null_type = orjson.dumps(dict(make_event(90_002), type=None))
    not_json = b"{oops"
    items = good[:1000] + [bad_time] + good[1000:2000] + [not_json, null_type] + good[2000:]
    harness.push(rclient, queue, items)
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_max_attempts=3)
    with harness.ThreadWorker(s) as worker:
        harness.wait_until(lambda: harness.in_flight(rclient, queue) == 0, 60, "the queue to drain")
    assert harness.counts(postgres.url, table) == (3000, 3000)
    dead = [orjson.loads(x) for x in rclient.lrange(queue + ":dead", 0, -1)]
    by_item = {d["item"]: d for d in dead}
    assert set(by_item) == {bad_time.decode(), null_type.decode(), not_json.decode()}
    assert "22007" in by_item[bad_time.decode()]["error"] and by_item[bad_time.decode()]["attempts"] == 3
    assert "23502" in by_item[null_type.decode()]["error"]  # NOT NULL
    assert by_item[not_json.decode()]["error"].startswith("not JSON")
    assert worker.metrics.dead_letters._value.get() == 3


def test_metrics_endpoint(postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str,
                          rclient: redis.Redis) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    harness.push(rclient, queue, harness.make_wire(100))
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_metrics_port=port)
    with harness.ThreadWorker(s) as worker:
        serve(worker.metrics.registry, port)
        harness.wait_until(lambda: harness.in_flight(rclient, queue) == 0, 30, "the queue to drain")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in ("evpipe_worker_queue_depth", "evpipe_worker_batch_size_bucket", "evpipe_worker_insert_seconds_bucket",
                 "evpipe_worker_dead_letters_total", "evpipe_worker_events_inserted_total 100.0"):
        assert name in body, name


def test_sigterm_finishes_the_batch_and_exits_cleanly(
    postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, rclient: redis.Redis,
    tmp_path: Path,
) -> None:
    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    s = harness.settings(postgres.url, redis_server.url, queue, table)
    log, n = tmp_path / "worker.log", 20_000
    proc = harness.start_process(s, worker_id="sigterm-w", log=log)
    producer = harness.Producer(rclient, queue, n, seconds=4)
    try:
        producer.start()
        harness.wait_until(lambda: harness.counts(postgres.url, table)[0] > 0, 60, "the first rows")
        proc.send_signal(signal.SIGTERM)  # mid-stream
        assert proc.wait(timeout=30) == 0, log.read_text()
        producer.join()
    finally:
        proc.kill()
    left = rclient.llen(queue)
    assert harness.in_flight(rclient, queue) == left  # it acknowledged everything it had taken
    assert 0 < left < n
    assert harness.counts(postgres.url, table) == (n - left, n - left)
    assert not rclient.exists(queue + ":worker:sigterm-w")
    assert not rclient.sismember(queue + ":workers", "sigterm-w")


def test_worker_creates_the_schema(postgres: Service, redis_server: Service, redis_prefix: str,
                                   pg_schema: str, rclient: redis.Redis) -> None:
    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    s = harness.settings(postgres.url, redis_server.url, queue, table)
    with harness.ThreadWorker(s):
        harness.push(rclient, queue, harness.make_wire(10))
        harness.wait_until(lambda: harness.in_flight(rclient, queue) == 0, 30, "the queue to drain")
    with psycopg.connect(postgres.url) as conn:
        assert len(pgstore.partition_days(conn, table)) == 3  # yesterday, today, tomorrow


def test_decode_and_error_classification() -> None:
    a, b = orjson.dumps(make_event(1)), orjson.dumps(make_event(2))
    metrics = WorkerMetrics()
    parsed = RowParser(metrics)([10, 11, 12, 13, 14], [a, b, a, b"[1]", b"\xff"])
    assert [item for item, _ in parsed.table] == [a, b] and parsed.offsets == [10, 11]
    assert metrics.duplicates._value.get() == 1  # the second copy of a, dropped within the batch
    assert [(p.offset, p.error.split(":")[0]) for p in parsed.poison] == [
        (13, "not a wire-format event"), (14, "not JSON")]
    assert is_item_error(psycopg.errors.NotNullViolation())
    assert is_item_error(psycopg.errors.InvalidDatetimeFormat())
    assert not is_item_error(psycopg.errors.AdminShutdown())
    assert not is_item_error(psycopg.errors.UndefinedTable())  # misconfiguration: retry, never dead-letter
    assert not is_item_error(psycopg.OperationalError("connection refused"))


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers.worker.settings import WorkerSettings
    from evpipe.settings import ConfigError, load

    monkeypatch.setenv("WORKER_TABLE", "a.b.c")
    with pytest.raises(ConfigError, match="WORKER_TABLE"):
        load(WorkerSettings)
    monkeypatch.setenv("WORKER_TABLE", "s1.events")
    monkeypatch.setenv("WORKER_HEARTBEAT_TTL_S", "1")
    with pytest.raises(ConfigError, match="WORKER_HEARTBEAT_TTL_S"):
        load(WorkerSettings)
    monkeypatch.delenv("WORKER_HEARTBEAT_TTL_S")
    assert load(WorkerSettings).worker_table == "s1.events"


def test_cli_help_lists_the_variables() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "evpipe", "worker", "--help"], capture_output=True, text=True,
                         cwd=harness.REPO, check=True).stdout
    for name in ("REDIS_QUEUE_KEY", "WORKER_BATCH_SIZE", "WORKER_MAX_ATTEMPTS", "WORKER_METRICS_PORT"):
        assert name in out


def test_worker_applies_retention(postgres: Service, redis_server: Service, redis_prefix: str,
                                  pg_schema: str, rclient: redis.Redis) -> None:
    import datetime as dt

    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    old_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=40)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        pgstore.ensure_schema(conn, table, days_ahead=1)
        pgstore.ensure_partitions(conn, table, days_ahead=0, today=old_day)
        assert old_day in pgstore.partition_days(conn, table)
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_retention_days=30)
    with harness.ThreadWorker(s):
        harness.push(rclient, queue, harness.make_wire(10))
        harness.wait_until(lambda: harness.in_flight(rclient, queue) == 0, 30, "the queue to drain")
    with psycopg.connect(postgres.url) as conn:
        days = pgstore.partition_days(conn, table)
    assert old_day not in days and len(days) == 3
    assert harness.counts(postgres.url, table) == (10, 10)
