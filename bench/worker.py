"""Stage-2 worker throughput against raw COPY of the same rows into the same table, in the same run.

1. baseline: plain COPY of the rows into the events table, one transaction per
   WORKER_BATCH_SIZE rows (no Redis, no JSON parsing, no dedup);
2. the table and ledger are emptied, the Redis list is pre-filled with the same
   events as wire-format bytes, and one worker (in this process) drains it:
   Redis take -> JSON decode -> COPY into staging -> ledger dedup insert -> ack.

Uses DATABASE_URL and REDIS_URL (defaults: the local servers), a throw-away
schema and queue key, removed afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import orjson
import psycopg
import redis

from bench.report import write_result
from consumers import pgstore
from consumers.worker.settings import WorkerSettings
from consumers.worker.worker import Worker
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
        elapsed = time.perf_counter() - started
        conn.execute(f"TRUNCATE {table}, {table}_ids")
    return elapsed


def _drain(settings: WorkerSettings, client: redis.Redis, n: int) -> tuple[float, Worker]:
    worker = Worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    queue = settings.redis_queue_key
    while client.llen(queue) or worker.queue.processing_depth():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    worker.stop.set()
    thread.join(timeout=60)
    return elapsed, worker


def run(quick: bool) -> dict[str, Any]:
    n = 100_000 if quick else 500_000
    url = os.environ.get("DATABASE_URL", "postgresql://127.0.0.1:5432/test")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    schema, queue = f"bench_worker_{tag}", f"evpipe-bench:{tag}:events"
    table = f"{schema}.events"
    client = redis.Redis.from_url(redis_url)
    events = _events(n)
    rows = [pgstore.event_row(e) for e in events]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        pgstore.ensure_schema(conn, table, days_ahead=1)
    try:
        raw_s = _raw_copy(url, table, rows)
        wire = [orjson.dumps(e) for e in events]
        for i in range(0, n, 10_000):
            client.rpush(queue, *wire[i:i + 10_000])
        settings = WorkerSettings(database_url=url, redis_url=redis_url, redis_queue_key=queue, worker_table=table,
                                  worker_batch_size=BATCH, worker_metrics_port=0, worker_partition_days_ahead=1)
        worker_s, worker = _drain(settings, client, n)
        with psycopg.connect(url) as conn:
            stored, distinct = conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {table}").fetchone()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for key in client.scan_iter(match=f"evpipe-bench:{tag}:*"):
            client.delete(key)
    if stored != n or distinct != n:
        raise RuntimeError(f"worker stored {stored} rows ({distinct} distinct) of {n}")
    baseline, measured = n / raw_s, n / worker_s
    result = {
        "events": n, "batch_size": BATCH,
        "events_per_s": round(measured), "baseline_events_per_s": round(baseline), "ratio": measured / baseline,
        "worker_seconds": round(worker_s, 2), "raw_copy_seconds": round(raw_s, 2),
        "inserted": int(worker.metrics.inserted._value.get()),
        "target_events_per_s": 50_000, "target_ratio": 0.5,
    }
    rows_out = [
        {"step": "raw COPY (baseline)", "events": n, "seconds": round(raw_s, 2), "events_per_s": round(baseline)},
        {"step": "worker: Redis -> dedup COPY", "events": n, "seconds": round(worker_s, 2),
         "events_per_s": round(measured)},
    ]
    write_result("worker", result, rows_out)
    return result
