"""Stage-2 worker throughput against raw COPY of the same rows into the same table, in the same run.

1. baseline: plain COPY of the rows into the events table, one transaction per
   5,000 rows (no Redis, no JSON parsing, no dedup);
2. the table and ledger are emptied, the Redis list is pre-filled with the same
   events as wire-format bytes, and one worker (in this process, default
   settings) drains it: Redis take -> JSON decode -> ids COPYed into the
   ledger + rows COPYed into the table, one transaction per batch -> ack.

Three rounds of both; the medians are compared. Every round checks that each
event was stored exactly once.

Uses DATABASE_URL and REDIS_URL (defaults: the local servers), a throw-away
schema and queue key, removed afterwards.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from typing import Any

import orjson
import psycopg
import redis

from bench.report import write_result
from consumers.worker.settings import WorkerSettings
from consumers.worker.worker import Worker
from evpipe import pgstore
from schemas.envelope import Enrichment, EventValidator, now_timestamp

BATCH = 5000


def _events(n: int) -> list[dict[str, Any]]:
    validator = EventValidator()
    enrichment = Enrichment(source_id="bench", received_at=now_timestamp(), ip="10.1.2.3", user_agent="bench/1")
    return [validator.normalize({"type": "page_view", "user_id": f"u{i % 5000}",
                                 "properties": {"path": f"/p/{i % 300}", "ms": i % 1000},
                                 "context": {"library": {"name": "bench", "version": "1"}}}, enrichment)
            for i in range(n)]


def _raw_copy(url: str, table: str, rows: list[tuple[Any, ...]]) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            pgstore.copy_rows_raw(conn, rows[i:i + BATCH], table)
        return time.perf_counter() - started


def _drain(settings: WorkerSettings, client: redis.Redis, wire: list[bytes]) -> tuple[float, int]:
    """Pre-fill the list, then time one worker draining it; returns (seconds, events it inserted)."""
    queue = settings.redis_queue_key
    for i in range(0, len(wire), 10_000):
        client.rpush(queue, *wire[i:i + 10_000])
    worker = Worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    while client.llen(queue) or worker.queue.processing_depth():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    worker.stop()
    thread.join(timeout=60)
    return elapsed, int(worker.metrics.inserted._value.get())


def _stored(url: str, table: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {table}").fetchone()
        conn.execute(f"TRUNCATE {table}, {table}_ids")
    assert row is not None
    return int(row[0]), int(row[1])


def _require_servers(url: str, redis_url: str) -> None:
    """Postgres and Redis are servers of the machine (the README's set-up), not started here: say so."""
    from evpipe.local.stack import POSTGRES_HINT, REDIS_HINT
    from evpipe.settings import redact_url

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"no Postgres at {redact_url(url)} ({' '.join(str(exc).split())}); {POSTGRES_HINT}, "
                           "or set DATABASE_URL") from None
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"no Redis at {redact_url(redis_url)} ({exc}); {REDIS_HINT}, or set REDIS_URL") from None


def run(quick: bool) -> dict[str, Any]:
    # Rounds alternate baseline and worker so a burst of load on a shared machine hits both alike;
    # the medians are compared.
    n, rounds = (100_000, 3) if quick else (300_000, 3)
    url = os.environ.get("DATABASE_URL", "postgresql://127.0.0.1:5432/test")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    _require_servers(url, redis_url)
    tag = uuid.uuid4().hex[:8]
    schema, queue = f"bench_worker_{tag}", f"evpipe-bench:{tag}:events"
    table = f"{schema}.events"
    client = redis.Redis.from_url(redis_url)
    settings = WorkerSettings(  # type: ignore[call-arg]  # other fields default (no pydantic mypy plugin)
        database_url=url, redis_url=redis_url, redis_queue_key=queue, worker_table=table, worker_batch_size=BATCH,
        worker_metrics_port=0, worker_partition_days_ahead=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        pgstore.ensure_schema(conn, table, days_ahead=1)
    raw_times, worker_times, rows_out = [], [], []
    try:
        for r in range(rounds):
            events = _events(n)
            rows = [pgstore.event_row(e) for e in events]
            raw_times.append(_raw_copy(url, table, rows))
            if _stored(url, table) != (n, n):
                raise RuntimeError("raw COPY did not store every row")
            worker_s, inserted = _drain(settings, client, [orjson.dumps(e) for e in events])
            worker_times.append(worker_s)
            stored = _stored(url, table)
            if stored != (n, n) or inserted != n:
                raise RuntimeError(f"worker stored {stored} (rows, distinct) and counted {inserted} of {n}")
            rows_out.append({"round": r + 1, "events": n, "raw_copy_events_per_s": round(n / raw_times[-1]),
                             "worker_events_per_s": round(n / worker_s), "ratio": raw_times[-1] / worker_s})
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for key in client.scan_iter(match=f"evpipe-bench:{tag}:*"):
            client.delete(key)
    baseline, measured = n / statistics.median(raw_times), n / statistics.median(worker_times)
    result = {
        "events_per_round": n, "rounds": rounds, "batch_size": BATCH, "writers": settings.worker_writers,
        "events_per_s": round(measured), "baseline_events_per_s": round(baseline), "ratio": measured / baseline,
        "target_events_per_s": 50_000, "target_ratio": 0.5,
    }
    write_result("worker", result, rows_out)
    return result
