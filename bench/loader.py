"""Loader throughput against two raw baselines measured on the same events in the same run.

1. raw consume-only ceiling: a bare confluent-kafka consumer (same consumer
   config as the runtime) reads every message and does nothing with it; the
   faster of 1,000 and 10,000 messages per consume() call counts;
2. raw insert: the same events, parsed to Arrow beforehand, go into a plain
   events table with ``client.insert_arrow`` in 50,000-row inserts (no Kafka,
   no dedup, no ledger);
3. the loader (in this process: consumer runtime -> parse -> stage ->
   dedup insert -> commit) loads the topic into a fresh database.

Rates are timed from the first message consumed to the last one handled, so
the consumer-group join (seconds on Tansu) is left out of all of them. The
target is a loader at >= 50% of the raw consume ceiling.

Kafka: KAFKA_BOOTSTRAP_SERVERS if set, else a throw-away local Tansu broker.
ClickHouse: CLICKHOUSE_URL if set, else a throw-away embedded engine.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.kafka import bench_kafka
from bench.report import write_result
from evpipe.gctune import DEFAULT_GEN0_THRESHOLD, tune_for_throughput

BATCH_ROWS = 50_000
# A finite backlog ends in part-filled batches that would wait for the 1 s age cut (a latency
# bound, not a throughput one; a sustained stream fills batches by size). Cut them sooner.
MAX_AGE_S = 0.2
PARTITIONS = 6


def _values(n: int) -> list[bytes]:
    from schemas.envelope import Enrichment, EventValidator, now_timestamp

    validator = EventValidator()
    enrichment = Enrichment(source_id="bench", received_at=now_timestamp(), ip="10.1.2.3", user_agent="bench/1")
    return [orjson.dumps(validator.normalize({
        "type": f"type_{i % 20}", "user_id": f"u{i % 5000}",
        "properties": {"path": f"/p/{i % 300}", "ms": i % 1000},
        "context": {"library": {"name": "bench", "version": "1"}},
    }, enrichment)) for i in range(n)]


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    from evpipe.kafka import producer_config
    from evpipe.settings import KafkaSettings

    producer = Producer(producer_config(KafkaSettings(kafka_bootstrap_servers=bootstrap)))
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, key=str(i % 5000).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("producer did not deliver every event")


@dataclass(frozen=True)
class RawConsume:
    """The raw consume-only ceiling: the best of the poll sizes tried."""

    seconds: float  # from the first message to the n-th
    cpu_s: float  # this process's CPU meanwhile (the consumer and librdkafka's threads; not the broker's)
    poll: int  # messages per consume() call


def _raw_consume(bootstrap: str, topic: str, n: int) -> RawConsume:
    """Read the topic with a bare consumer per poll size (the runtime's default and a large one); keep the fastest.

    The ceiling is the best raw rate on the day, so a ratio against it is never flattered by a slow poll size.
    """
    return min((_raw_consume_once(bootstrap, topic, n, poll) for poll in (1_000, 10_000)), key=lambda r: r.seconds)


def _raw_consume_once(bootstrap: str, topic: str, n: int, poll: int) -> RawConsume:
    from confluent_kafka import Consumer

    from evpipe.kafka import consumer_config
    from evpipe.settings import KafkaSettings

    consumer = Consumer(consumer_config(KafkaSettings(kafka_bootstrap_servers=bootstrap),
                                        f"bench-raw-{uuid.uuid4().hex[:8]}", **{"session.timeout.ms": 6000}))
    consumer.subscribe([topic])
    seen, started, cpu_started = 0, 0.0, 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < n and time.monotonic() < deadline:
            batch = consumer.consume(poll, 0.5)
            if batch and not started:
                started, cpu_started = time.perf_counter(), time.process_time()
            seen += sum(1 for m in batch if m.error() is None)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        consumer.close()
    if seen < n:
        raise RuntimeError(f"raw consumer read {seen} of {n} messages")
    return RawConsume(elapsed, cpu, poll)


def _raw_insert(client: Any, database: str, values: list[bytes]) -> float:
    from schemas.arrow import parse_ndjson
    from schemas.clickhouse import clickhouse_create_table

    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(clickhouse_create_table(f"`{database}`.raw_events"))
    tables = [parse_ndjson(b"\n".join(values[i:i + BATCH_ROWS])) for i in range(0, len(values), BATCH_ROWS)]
    started = time.perf_counter()
    for table in tables:
        client.insert_arrow(f"`{database}`.raw_events", table)
    elapsed = time.perf_counter() - started
    stored = client.query(f"SELECT count() FROM `{database}`.raw_events").result_rows[0][0]
    if stored != len(values):
        raise RuntimeError(f"raw insert stored {stored} of {len(values)}")
    return elapsed


def timed_run(run: Callable[[], None], stop: Callable[[], None], stats: Any, n: int, what: str) -> float:
    """Run a consumer loop on a thread; seconds from its first consumed message to ``n`` rows handled.

    The group join (seconds on Tansu) is left out. Raises if it stops, or times out, short of ``n``.
    """
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while not stats.consumed and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.005)
    started = time.perf_counter()
    while stats.rows < n and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop()
    thread.join(60)
    if stats.rows < n:
        raise RuntimeError(f"{what} handled {stats.rows} of {n} events")
    return elapsed


def _run_loader(settings: Any, n: int) -> tuple[float, Any]:
    from consumers.loader.app import Loader

    loader = Loader(settings)
    return timed_run(loader.run, loader.stop, loader.loop.stats, n, "loader"), loader


class _NullSink:
    """Accepts every batch: the runtime's own cost (consume, buffer, parse, commit) without ClickHouse."""

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        return None

    def begin(self, batch: Any) -> None:
        pass

    def write(self, batch: Any) -> None:
        pass


def _run_runtime_only(settings: Any, n: int) -> float:
    from consumers.runtime import ConsumerLoop

    loop = ConsumerLoop(settings.model_copy(update={"metrics_port": 0}), _NullSink(),
                        f"{settings.loader_group_id}-null", [settings.kafka_topic])
    return timed_run(loop.run, loop.stop, loop.stats, n, "runtime with a no-op sink")


def run(quick: bool) -> dict[str, Any]:
    from consumers.loader.settings import LoaderSettings
    from evpipe.clickhouse import connect
    from evpipe.kafka import create_topics
    from evpipe.settings import KafkaSettings
    n = 100_000 if quick else 500_000
    # The consumer processes' collector policy, applied before the baselines too, so they run under it as well.
    tune_for_throughput(DEFAULT_GEN0_THRESHOLD)
    tag = uuid.uuid4().hex[:8]
    topic, database = f"bench_loader_{tag}", f"bench_loader_{tag}"
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp, bench_kafka(Path(tmp)) as bootstrap:
        workdir = Path(tmp)
        server = None
        if not os.environ.get("CLICKHOUSE_URL"):  # a private `evpipe clickhouse serve`, as `evpipe dev up` runs
            from evpipe.local.clickhouse import LocalClickHouse
            from evpipe.local.daemon import free_port

            server = LocalClickHouse(workdir / "state", free_port())
            server.ensure()
        ch_url = os.environ.get("CLICKHOUSE_URL") or (server.url if server else "")
        client = connect(ch_url)
        try:
            create_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), [topic, f"{topic}.dlq"],
                          partitions=PARTITIONS)
            values = _values(n)
            print(f"producing {n:,} events to {PARTITIONS} partitions ...", flush=True)
            _produce(bootstrap, topic, values)
            print("raw consume-only ceiling ...", flush=True)
            raw = _raw_consume(bootstrap, topic, n)
            consume_s = raw.seconds
            print("raw insert_arrow of the same rows ...", flush=True)
            insert_s = _raw_insert(client, f"{database}_raw", values)
            settings = LoaderSettings(
                kafka_bootstrap_servers=bootstrap, kafka_topic=topic, kafka_dlq_topic=f"{topic}.dlq",
                clickhouse_url=ch_url, clickhouse_database=database, loader_group_id=f"bench-loader-{tag}",
                loader_consume_replay=False, metrics_port=0, loader_admin_host="127.0.0.1",
                consumer_session_timeout_ms=6000, consumer_batch_max_messages=BATCH_ROWS,
                consumer_batch_max_age_s=MAX_AGE_S,
            )
            print("runtime with a no-op sink ...", flush=True)
            runtime_s = _run_runtime_only(settings, n)
            print("loader ...", flush=True)
            loader_s, loader = _run_loader(settings, n)
            sink_s = loader.sink.metrics.insert_seconds._sum.get()  # the loader's own registry: this run only
            stored, distinct = client.query(
                f"SELECT count(), uniqExact(event_id) FROM `{database}`.events").result_rows[0]
        finally:
            for db in (database, f"{database}_raw"):
                client.command(f"DROP DATABASE IF EXISTS `{db}`")
            if server is not None:
                server.stop()
    if stored != n or distinct != n:
        raise RuntimeError(f"loader stored {stored} rows ({distinct} distinct) of {n}")
    ceiling, raw_insert, measured = n / consume_s, n / insert_s, n / loader_s
    runtime_only = n / runtime_s
    result = {
        "events": n, "partitions": PARTITIONS, "batch_rows": BATCH_ROWS, "batch_max_age_s": MAX_AGE_S,
        "clickhouse": "CLICKHOUSE_URL" if os.environ.get("CLICKHOUSE_URL") else "evpipe clickhouse serve (HTTP)",
        "events_per_s": round(measured), "baseline_events_per_s": round(ceiling), "ratio": measured / ceiling,
        "raw_consume_poll": raw.poll, "raw_consume_cpu_us_per_event": round(raw.cpu_s / n * 1e6, 2),
        "raw_insert_events_per_s": round(raw_insert), "ratio_to_raw_insert": measured / raw_insert,
        "runtime_noop_sink_events_per_s": round(runtime_only), "ratio_to_runtime_noop_sink": measured / runtime_only,
        "loader_seconds": round(loader_s, 2), "batches": loader.loop.stats.committed_batches,
        # Time inside ClickHouseSink.write (stage, anti-join, inserts), on the runtime's writer thread.
        "sink_write_seconds": round(sink_s, 2),
        "target_ratio": 0.5,
    }
    rows = [
        {"step": "raw consume-only (ceiling)", "events": n, "seconds": round(consume_s, 2),
         "events_per_s": round(ceiling), "ratio": 1.0},
        {"step": "raw insert_arrow over HTTP (pre-parsed)", "events": n, "seconds": round(insert_s, 2),
         "events_per_s": round(raw_insert), "ratio": raw_insert / ceiling},
        {"step": "consumer runtime, no-op sink", "events": n, "seconds": round(runtime_s, 2),
         "events_per_s": round(runtime_only), "ratio": runtime_only / ceiling},
        {"step": "loader over HTTP to evpipe clickhouse serve: consume -> parse -> dedup insert -> commit",
         "events": n, "seconds": round(loader_s, 2),
         "events_per_s": round(measured), "ratio": measured / ceiling},
    ]
    write_result("loader", result, rows)
    return result
